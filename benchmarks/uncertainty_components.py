"""The parts of the closed form's std on stress cases, cached, so that std rules can be compared
without refitting (docs/uncertainty.md, "How the constants were chosen").

``collect``: every case of the chosen seeds is fitted once through the product's fit path
(``benchmarks/stress.py::fit``); on the way, the closed form's std is wrapped to also keep, per
pixel (tile coordinates, one tile per plane on these images):

- ``lam``: the estimate (the mean); ``members``: the 4 noise-resampled members;
- ``lam_f{j}``: the unbounded closed form at ``(j delta, j s)`` for several ``j``;
- ``lam_d{j}`` / ``lam_s{j}``: only delta, or only s, scaled by ``j``;
- ``lam_cal{c}``: channel ``c``'s field times 1.05 (the sensitivity to a scale error);
- ``lam_blur``: every field blurred by its noise's correlation length (a rendering blur);

and the truth, the evaluation pixels and the product's std. ``evaluate``: the coverage of the
90 % interval and the width (median std / rmse) per case for candidate rules
(:data:`RULES`).

    python benchmarks/uncertainty_components.py collect --seeds tuning --dir /tmp/unc
    python benchmarks/uncertainty_components.py evaluate --dir /tmp/unc

``collect-neural`` / ``evaluate-neural``: the same for the neural method's std (its refitted
members, its mean, the symmetric bias term it uses and the closed form's forward difference),
scored by :data:`NEURAL_RULES`.

``scale``: how far each case's std is from the one that would cover right. Per case, the
factors ``c85``, ``c90``, ``c95`` by which the product's std (as the product wrote it) would
have to be multiplied for the 90 % interval to hold the truth on 85, 90 and 95 % of the
evaluation pixels; the case is in range when ``c85 <= 1 <= c95``. The spread of ``log c90``
across cases is what no single constant of a std rule can remove (docs/uncertainty.md, "How
far one rule can go"). Works on either cache (:mod:`benchmarks.std_scale`).

Only tuning seeds are for choosing rules (docs/stress.md).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.std_scale import report_scale  # noqa: E402
from benchmarks.stress import Z90, evaluation_region, fit  # noqa: E402
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    TEST_SEEDS,
    TUNING_SEEDS,
    make_stress_case,
)

FACTORS = (1 / 1.5, 1 / 1.25, 1.25, 1.5)
PART_FACTORS = (1 / 1.5, 1.5)
CAL_STEP = 0.05


def _collect_case(spec, seed: int) -> dict[str, np.ndarray]:
    import pipeline.estimate.fit as fitmod
    from pipeline.estimate import uncertainty as U
    from pipeline.estimate.closed_form import linear_terms, local_least_squares
    from pipeline.tiling import valid_cut

    stash: dict = {}
    orig_std, orig_plan = fitmod.closed_form_std, fitmod.plan_tiles

    def plan(*a, **k):
        p = orig_plan(*a, **k)
        stash["plan"] = p
        return p

    def wrapped(tiles, lam, model, px, delta_um, window_um, est, unc, noise, seeds, *,
                weight=None):
        std = orig_std(tiles, lam, model, px, delta_um, window_um, est, unc, noise, seeds,
                       weight=weight)
        e_ = U.unbounded(est)
        n, c, h, w = tiles.shape
        members = np.empty((n, unc.ensemble_size, h, w))
        rngs = [np.random.default_rng(int(sd)) for sd in seeds]
        pw = None if weight is None else np.repeat(weight, 2, axis=0)
        for k in range(0, unc.ensemble_size, 2):
            pair = np.stack([U._pair(np.asarray(tiles[i], np.float64), noise, rngs[i])
                             for i in range(n)]).reshape(n * 2, c, h, w)
            members[:, k:k + 2] = U.closed_form_scaled(pair, model, px, delta_um, window_um,
                                                       1.0, e_, weight=pw).reshape(n, 2, h, w)

        def at(dfac, sfac, f=tiles):
            terms = linear_terms(np.asarray(f, np.float64), model,
                                 max(delta_um * dfac, 1.5 * px), px, backend=e_.backend)
            if weight is not None:
                terms.weight = terms.weight * weight
            return local_least_squares(terms, window_um * sfac, px, lambda_min=-np.inf,
                                       lambda_max=np.inf)[0]

        # the same members' noise refitted at (delta / 1.5, s / 1.5): the noise part of the
        # backward difference lam(delta, s) - lam(delta / 1.5, s / 1.5), member by member
        narrow = np.empty_like(members)
        rngs = [np.random.default_rng(int(sd)) for sd in seeds]
        for k in range(0, unc.ensemble_size, 2):
            pair = np.stack([U._pair(np.asarray(tiles[i], np.float64), noise, rngs[i])
                             for i in range(n)]).reshape(n * 2, c, h, w)
            narrow[:, k:k + 2] = U.closed_form_scaled(pair, model, px, delta_um, window_um,
                                                      1 / 1.5, e_, weight=pw).reshape(n, 2, h, w)
        d = {"std": std, "lam": lam, "members": members, "members_f0.667": narrow,
             "lam_f1": at(1, 1)}
        for j in FACTORS:
            d[f"lam_f{j:.3f}"] = at(j, j)
        for j in PART_FACTORS:
            d[f"lam_d{j:.3f}"] = at(j, 1)
            d[f"lam_s{j:.3f}"] = at(1, j)
        for ch in range(c):
            f2 = np.array(tiles, np.float64)
            f2[:, ch] *= 1 + CAL_STEP
            d[f"lam_cal{ch}"] = at(1, 1, f2)
        corr = [m.corr_length_px for m in noise.models]
        if any(cp > 0 for cp in corr):
            fb = np.array(tiles, np.float64)
            for ch, cp in enumerate(corr):
                if cp > 0:
                    fb[:, ch] = gaussian_filter(fb[:, ch], [0, cp, cp], mode="reflect")
            d["lam_blur"] = at(1, 1, fb)
        else:
            d["lam_blur"] = d["lam_f1"]
        stash["maps"] = d
        stash["meta"] = {"delta_px": delta_um / px, "window_px": window_um / px,
                         "smooth_px": unc.variance_smoothing * window_um / px,
                         "bias_factor": unc.bias_factor, "corr_px": corr}
        return std

    fitmod.closed_form_std, fitmod.plan_tiles = wrapped, plan
    try:
        case = make_stress_case(spec, seed)
        mean, std, ident = fit(case.image, case, "closed-form")
    finally:
        fitmod.closed_form_std, fitmod.plan_tiles = orig_std, orig_plan
    p = stash["plan"]
    if len(p.tiles) != 1:
        raise RuntimeError(f"{case.name}: {len(p.tiles)} tiles; this script wants one")
    cut = valid_cut(p.tiles[0])
    region = evaluation_region(case)
    out = {k: np.asarray(v[0], np.float32) for k, v in stash["maps"].items()}
    out["cut"] = np.array([cut[0].start, cut[0].stop, cut[1].start, cut[1].stop])
    out["truth"] = case.lam.astype(np.float32)
    out["ok"] = region & ident & np.isfinite(mean) & np.isfinite(std)
    out["mean_product"], out["std_product"] = mean, std
    for k, v in stash["meta"].items():
        out[k] = np.array(v)
    out["calibration_error"] = np.array(spec.calibration_error)
    out["channels"] = np.array(spec.channels)
    return out


# ------------------------------------------------------------------ evaluation

def _smooth(x: np.ndarray, s: float) -> np.ndarray:
    bad = ~np.isfinite(x)
    y = gaussian_filter(np.where(bad, 0.0, x), s, mode="reflect", truncate=3.0)
    y[bad] = np.nan
    return y


def parts(d) -> dict[str, np.ndarray]:
    """The terms of the std (tile coordinates), squared."""
    from pipeline.estimate.uncertainty import (
        WINDOW_BIAS_SCALE,
        _blur,
        attenuation_parts,
        combine_std,
    )

    m, lam = d["members"].astype(np.float64), d["lam"].astype(np.float64)
    s = float(d["smooth_px"])
    zero = np.zeros((1,) + lam.shape)
    f = {k: d[k].astype(np.float64) for k in d.files if k.startswith("lam_")}
    j = 1.5
    symmetric = np.nan_to_num(np.abs(f["lam_f1.500"] - f["lam_f0.667"])) / (j**2 - j**-2)
    forward = np.nan_to_num(np.abs(f["lam_f1.500"] - f["lam_f1"])) / (j**2 - 1)
    # two bias terms scored and not adopted (docs/uncertainty.md, "How far one rule can go"):
    # the forward step's squared size less its noise power (that of the backward step's
    # members, refitted at the narrower bandwidth, scaled by 1/j^2 to the wider one), and the
    # attenuation bias per pixel (|D1| / a, D1 not averaged)
    w = float(d["window_px"])
    f1, fn, mn = (d[k].astype(np.float64) for k in ("lam_f1", "lam_f0.667", "members_f0.667"))
    step_noise = np.mean([((mn[i] - fn) - (m[i] - f1)) ** 2 for i in range(len(m))], axis=0)
    step_noise = np.nan_to_num(_blur(np.nan_to_num(step_noise)[None], w)[0])
    raw = np.nan_to_num(f["lam_f1.500"] - f1) ** 2
    d1, p1, a2 = attenuation_parts(f1[None], m[None], w)
    return {
        "forward_less_noise": np.clip(raw - step_noise / j**2, 0.0, None) / (j**2 - 1) ** 2,
        "attenuation_pixel": np.nan_to_num(d1**2 / a2)[0],
        "noise_arithmetic": combine_std(m[None], lam[None], zero, smooth_px=s)[0] ** 2,
        "noise_geometric": combine_std(m[None], lam[None], zero, smooth_px=s,
                                       geometric=True)[0] ** 2,
        "symmetric": symmetric**2, "forward": forward**2, "k": WINDOW_BIAS_SCALE,
        "blur": np.nan_to_num(f["lam_blur"] - f["lam_f1"]) ** 2,
        "attenuation": np.nan_to_num(p1 / a2)[0],  # attenuation_bias squared
    }


def _product(p) -> np.ndarray:
    """The product's squared std: geometric smoothing, the larger of k times the forward bias
    and the attenuation bias."""
    return p["noise_geometric"] + np.maximum(p["k"] ** 2 * p["forward"], p["attenuation"])


RULES = {
    # before issue 12: arithmetic smoothing, symmetric s^2-law bias
    "previous": lambda p: p["noise_arithmetic"] + p["symmetric"],
    # a forward bias alone, scaled
    "arithmetic + k forward": lambda p: p["noise_arithmetic"] + p["k"] ** 2 * p["forward"],
    # issue 12 until 2026-12-07: geometric smoothing, k times the forward bias
    "forward only": lambda p: p["noise_geometric"] + p["k"] ** 2 * p["forward"],
    # the product: the larger of that and the attenuation bias
    "product": lambda p: _product(p),
    # the product plus a rendering-blur term (measured: no effect)
    "product + blur": lambda p: _product(p) + p["blur"],
    # not adopted (docs/uncertainty.md, "How far one rule can go"): the forward step with its
    # noise taken out (k = 3), and the attenuation bias per pixel (x 1.5) as a third term
    "forward less its noise, k 3": lambda p: p["noise_geometric"] + np.maximum(
        9.0 * p["forward_less_noise"], p["attenuation"]),
    "product + attenuation per pixel": lambda p: p["noise_geometric"] + np.maximum(
        np.maximum(p["k"] ** 2 * p["forward"], p["attenuation"]), 2.25 * p["attenuation_pixel"]),
}
"""Squared std from the parts; ``k`` is :data:`~pipeline.estimate.uncertainty.WINDOW_BIAS_SCALE`."""


def evaluate_case(d, rule, p=None) -> tuple[float, float, float]:
    """Coverage, median std / rmse and rmse of one cached case under ``rule``."""
    y0, y1, x0, x1 = d["cut"]
    p = parts(d) if p is None else p
    std = np.sqrt(rule(p))[y0:y1, x0:x1]
    mean = d["mean_product"]
    ok = d["ok"] & np.isfinite(std)
    err = np.abs(mean - d["truth"])[ok]
    cov = float(np.mean(err <= Z90 * std[ok]))
    rmse = float(np.sqrt(np.mean(err**2)))
    return cov, float(np.median(std[ok]) / rmse), rmse


def evaluate(paths: list[Path], rules: dict, parts_of=None) -> None:
    parts_of = parts if parts_of is None else parts_of
    data = [(np.load(pth), None) for pth in paths]
    data = [(d, parts_of(d)) for d, _ in data]
    for name, rule in rules.items():
        covs, widths = [], []
        for d, p in data:
            c, wdt, _ = evaluate_case(d, rule, p)
            covs.append(c)
            widths.append(wdt)
        c = np.array(covs)
        print(f"{name:28s} in range {int(((c >= 0.85) & (c <= 0.95)).sum()):2d}/{c.size} "
              f"<0.80 {int((c < 0.8).sum()):2d} >0.95 {int((c > 0.95).sum()):2d} "
              f"median cov {np.median(c):.3f} median std/rmse {np.median(widths):.2f}")


def _collect_neural_case(spec, seed: int) -> dict[str, np.ndarray]:
    """One case through the product's neural fit, keeping the parts of its std (one tile)."""
    import pipeline.estimate.fit as fitmod
    import pipeline.estimate.neural as nmod
    from pipeline.estimate import uncertainty as U
    from pipeline.tiling import valid_cut

    stash: dict = {}
    orig_bias, orig_comb, orig_plan = nmod.smoothing_bias, nmod.combine_std, fitmod.plan_tiles

    def plan(*a, **k):
        stash["plan"] = orig_plan(*a, **k)
        return stash["plan"]

    def bias(f, model, px, delta, window, factor, est, *, weight=None):
        b = orig_bias(f, model, px, delta, window, factor, est, weight=weight)
        stash.setdefault("symmetric", []).append(b)
        stash.setdefault("forward", []).append(
            U.window_bias(f, model, px, delta, window, factor, est, weight=weight, scale=1.0))
        stash["meta"] = {"delta_px": delta / px, "window_px": window / px}
        return b

    def comb(members, estimate, b, **kw):
        stash.setdefault("members", []).append(members)
        stash.setdefault("mean", []).append(estimate)
        stash["smooth_px"] = kw.get("smooth_px", 0.0)
        return orig_comb(members, estimate, b, **kw)

    nmod.smoothing_bias, nmod.combine_std, fitmod.plan_tiles = bias, comb, plan
    try:
        case = make_stress_case(spec, seed)
        mean, std, ident = fit(case.image, case, "neural")
    finally:
        nmod.smoothing_bias, nmod.combine_std, fitmod.plan_tiles = orig_bias, orig_comb, orig_plan
    p = stash["plan"]
    if len(p.tiles) != 1 or len(stash["mean"]) != 1:
        raise RuntimeError(f"{case.name}: {len(p.tiles)} tiles; this script wants one")
    cut = valid_cut(p.tiles[0])
    out = {k: np.asarray(stash[k][-1][0], np.float32)
           for k in ("members", "mean", "symmetric", "forward")}
    out["cut"] = np.array([cut[0].start, cut[0].stop, cut[1].start, cut[1].stop])
    out["truth"] = case.lam.astype(np.float32)
    out["ok"] = evaluation_region(case) & ident & np.isfinite(mean) & np.isfinite(std)
    out["mean_product"], out["std_product"] = mean, std
    out["smooth_px"] = np.array(stash["smooth_px"])
    for k, v in stash["meta"].items():
        out[k] = np.array(v)
    return out


def neural_parts(d) -> dict[str, np.ndarray]:
    """The neural std's terms (tile coordinates), squared."""
    from pipeline.estimate.uncertainty import attenuation_bias, combine_std

    m, lam = d["members"].astype(np.float64), d["mean"].astype(np.float64)
    s, zero = float(d["smooth_px"]), np.zeros((1,) + lam.shape)
    out = {
        "noise_arithmetic": combine_std(m[None], lam[None], zero, smooth_px=s)[0] ** 2,
        "noise_geometric": combine_std(m[None], lam[None], zero, smooth_px=s,
                                       geometric=True)[0] ** 2,
        "symmetric": d["symmetric"].astype(np.float64) ** 2,
        "forward": d["forward"].astype(np.float64) ** 2,
        # the closed form's attenuation bias, read from the neural map and its members
        "attenuation": attenuation_bias(lam[None], m[None], float(d["window_px"]))[0] ** 2,
    }
    # re-smoothing: a smoother's bias is about what smoothing its own output once more changes
    # (S(S lam) - S lam), read here with a Gaussian as wide as the fit's own smoothing: the
    # mollifier's (a fraction of delta) and the window's, added in quadrature
    for f in RESMOOTH:
        width = np.hypot(f * float(d["delta_px"]), float(d["window_px"]))
        out[f"resmooth{f:g}"] = np.nan_to_num(_smooth(lam, width) - lam) ** 2
    return out


RESMOOTH = (0.2, 0.3, 0.45, 0.6)
"""Widths of the re-smoothing bias: the Gaussian's sigma is ``hypot(f delta, s)``."""


def _plus_forward(noise: str, k: float):
    """The rule ``noise + k^2 forward``."""
    return lambda p: p[noise] + k**2 * p["forward"]


NEURAL_RULES = {
    "product (arithmetic + symmetric)": lambda p: p["noise_arithmetic"] + p["symmetric"],
    "arithmetic, no bias": lambda p: p["noise_arithmetic"],
    "geometric, no bias": lambda p: p["noise_geometric"],
    "geometric + symmetric": lambda p: p["noise_geometric"] + p["symmetric"],
    **{f"geometric + {k:g} forward": _plus_forward("noise_geometric", k)
       for k in (0.5, 1.0, 1.5, 2.25)},
    **{f"arithmetic + {k:g} forward": _plus_forward("noise_arithmetic", k)
       for k in (0.5, 1.0, 1.5)},
    **{f"{n[:5]} + {c:g} resmooth {f:g}δ":
       (lambda p, n=n, f=f, c=c: p[f"noise_{n}"] + c**2 * p[f"resmooth{f:g}"])
       for n in ("arithmetic", "geometric") for f in RESMOOTH for c in (1.0, 2.0)},
    # the attenuation bias (docs/uncertainty.md), alone or as the larger with another term
    **{f"{n[:5]} + attenuation": (lambda p, n=n: p[f"noise_{n}"] + p["attenuation"])
       for n in ("arithmetic", "geometric")},
    "arith + max(symmetric, attenuation)":
        lambda p: p["noise_arithmetic"] + np.maximum(p["symmetric"], p["attenuation"]),
    **{f"geome + max({k:g} forward, attenuation)":
       (lambda p, k=k: p["noise_geometric"] + np.maximum(k**2 * p["forward"], p["attenuation"]))
       for k in (1.0, 2.25)},
}
"""Candidate squared stds of the neural method from :func:`neural_parts`."""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("collect", "evaluate", "collect-neural", "evaluate-neural",
                                       "scale"))
    ap.add_argument("--seeds", choices=("tuning", "test"), default="tuning")
    ap.add_argument("--specs", default="*")
    ap.add_argument("--max-seeds", type=int, default=None)
    ap.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.what.startswith("collect"):
        seeds = TUNING_SEEDS if args.seeds == "tuning" else TEST_SEEDS
        seeds = seeds[: args.max_seeds] if args.max_seeds else seeds
        pats = args.specs.split(",")
        specs = [s for s in STRESS_SPECS if any(fnmatch.fnmatch(s.name, q) for q in pats)]
        args.dir.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            for spec in specs:
                dst = args.dir / f"{spec.name}_s{seed}.npz"
                if dst.exists():
                    print(f"{dst.name} kept (exists; collect into an empty --dir to refit)",
                          flush=True)
                    continue
                t0 = time.perf_counter()
                collect = _collect_neural_case if args.what == "collect-neural" else _collect_case
                np.savez_compressed(dst, **collect(spec, seed))
                print(f"{dst.name} {time.perf_counter() - t0:.0f}s", flush=True)
        return 0
    if args.what == "scale":
        report_scale(sorted(args.dir.glob("*.npz")))
        return 0
    if args.what == "evaluate-neural":
        evaluate(sorted(args.dir.glob("*.npz")), NEURAL_RULES, neural_parts)
        return 0
    evaluate(sorted(args.dir.glob("*.npz")), RULES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
