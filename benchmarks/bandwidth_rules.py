"""Score bandwidth rules offline on the stress suite: the noise split's statistics, kept once.

Every rule of the automatic bandwidth choice (``pipeline.estimate.bandwidth``) reads only
second moments of the two noise-split halves' lambda maps over the evaluation pixels. This
script keeps them once per case, for a **full grid** (the default grid plus the extensions
the product may add at each edge), with the true r of the full-data estimate at every
candidate; ``evaluate`` then applies rules, the product's edge extension included, without
refitting.

``collect``, per stress case (the product's crop, nuclei, noise models and seed):

- ``AA[i, j]``, ``BB[i, j]``, ``AB[i, j]``: means of ``a_i a_j``, ``b_i b_j``, ``a_i b_j``
  over the evaluation pixels, where ``a_i`` and ``b_i`` are the centred lambda maps of the
  halves ``f + z`` and ``f - z`` at candidate ``i``;
- ``at_bound[i]``: as the product computes it;
- ``r[i]``: r with the true lambda of the closed form on the whole plane at candidate ``i``
  (least-squares weight zero outside the nuclei eroded by the support, as the fit does), on
  the stress evaluation region and identifiable pixels.

The statistics use one evaluation mask, that of the full grid (the product's mask grows
with the largest delta it evaluates), so the product's own choice is reproduced on most
cases but not all: ``evaluate`` reports how many. Rules are compared to each other on the
same statistics; the chosen rule is then run through the product
(``benchmarks/stress.py``).

    python benchmarks/bandwidth_rules.py collect --seeds tuning --out /tmp/bw_tuning.npz
    python benchmarks/bandwidth_rules.py evaluate /tmp/bw_tuning.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stress import evaluation_region  # noqa: E402
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    TEST_SEEDS,
    TUNING_SEEDS,
    make_stress_case,
)


def full_grid(pixel_size_um: float, shape: tuple[int, int]) -> tuple[list[float], list[float],
                                                                     list[float], list[float]]:
    """``(deltas, windows, base_deltas, base_windows)``: the default grid and every extension
    the product may add to it."""
    from pipeline.estimate.bandwidth_grid import (
        MAX_BORDER_FRACTION,
        MIN_DELTA_PX,
        MIN_WINDOW_PX,
        _extend,
        border_fraction,
        candidate_grid,
    )

    gd, gs = (sorted(g) for g in candidate_grid(pixel_size_um))
    d = sorted(set(gd + [v for top in (True, False) for v in _extend(gd, top, MIN_DELTA_PX)
                         if border_fraction(v, shape) <= MAX_BORDER_FRACTION]))
    s = sorted(set(gs + [v for top in (True, False) for v in _extend(gs, top, MIN_WINDOW_PX)]))
    return d, s, list(gd), list(gs)


def collect_case(spec, seed: int) -> dict[str, Any]:
    """The split statistics and true r of every candidate of the full grid, for one case."""
    import pipeline.estimate.bandwidth as bw
    from pipeline.config import Settings
    from pipeline.estimate import linear_terms, local_least_squares
    from pipeline.estimate.bandwidth import central_crop, select_bandwidth
    from pipeline.estimate.closed_form import identifiable_mask, nuclei_weight
    from pipeline.metrics import interior_r
    from pipeline.physics import ChromatinModel
    from pipeline.physics.observation import to_fields
    from pipeline.process import nuclei_foreground

    case = make_stress_case(spec, seed)
    px, model = case.pixel_size_um, ChromatinModel()
    fields = to_fields(case.image, case.channel_names, case.calibration_given)[0]
    fields = np.asarray(fields, dtype=np.float32)
    settings = Settings()
    fg = nuclei_foreground(fields, px, settings)
    fg = None if fg is None or not np.asarray(fg).any() else np.asarray(fg, dtype=bool)
    crop = np.asarray(central_crop(fields), dtype=np.float64)
    fg_crop = None if fg is None else central_crop(fg)
    if fg_crop is not None and not fg_crop.any():
        fg_crop = None
    deltas, windows, base_d, base_s = full_grid(px, fields.shape[-2:])

    kept: dict[str, Any] = {}
    original = bw._choose

    def capture(cands, reference_reliability):
        out = original(cands, reference_reliability)
        a = np.stack([c["a"] for c in cands])
        b = np.stack([c["b"] for c in cands])
        n = a.shape[1]
        kept.update(
            delta=np.array([c["delta_px"] for c in cands]),
            window=np.array([c["window_px"] for c in cands]),
            AA=a @ a.T / n, BB=b @ b.T / n, AB=a @ b.T / n,
            at_bound=np.array([c["at_bound"] for c in cands]),
            level=np.array([c.get("level_bias", 0.0) for c in cands]), n=n)
        return out

    bw._choose = capture
    try:
        t0 = time.perf_counter()
        select_bandwidth(crop, model, px, deltas_px=deltas, windows_px=windows, seed=settings.seed,
                         backend=settings.estimator.backend, foreground=fg_crop,
                         field_shape=fields.shape[-2:], extend=False,
                         foreground_weight=fg_crop is not None,
                         lambda_min=settings.estimator.lambda_min,
                         lambda_max=settings.estimator.lambda_max)
        seconds = time.perf_counter() - t0
    finally:
        bw._choose = original

    region = evaluation_region(case)
    r = np.full(len(kept["delta"]), np.nan)
    for dpx in deltas:
        try:
            terms = linear_terms(fields, model, dpx * px, px)
        except ValueError:
            continue
        if fg is not None:
            terms.weight = terms.weight * nuclei_weight(fg, terms.support_px)
        for i in np.flatnonzero(kept["delta"] == dpx):
            lam, den = local_least_squares(terms, kept["window"][i] * px, px)
            ok = identifiable_mask(terms, den) & region
            r[i] = interior_r(lam, case.lam, ok, border_px=0)
    kept.update(r=r, case=case.name, spec=spec.name, seed=seed, seconds=seconds,
                base_d=np.array(base_d), base_s=np.array(base_s),
                shape=np.array(fields.shape[-2:]))
    return kept


def collect(seeds: tuple[int, ...], specs, out: Path) -> None:
    cases = []
    for seed in seeds:
        for spec in specs:
            c = collect_case(spec, seed)
            print(f"{c['case']:36s} {len(c['r'])} candidates, best r {np.nanmax(c['r']):.3f} "
                  f"({c['seconds']:.0f} s)", flush=True)
            cases.append(c)
    np.save(out, np.array(cases, dtype=object), allow_pickle=True)


# ---------------------------------------------------------------- rules


def stats(c: dict) -> dict[str, np.ndarray]:
    """Per-candidate reliability, signal variance and the cross-half signal covariance."""
    va, vb, ab = np.diag(c["AA"]), np.diag(c["BB"]), np.diag(c["AB"])
    denom = np.sqrt(va * vb)
    rho = np.where(denom > 0, ab / np.where(denom > 0, denom, 1), 0.0)
    rel = np.where(rho > -1, 2 * rho / (1 + np.abs(rho)), -1.0)
    cross = 0.5 * (c["AB"] + c["AB"].T)  # cov_x(i, j): the signal covariance
    return {"rel": rel, "sig": ab, "cross": cross,
            "noise": (va + vb - 2 * ab) / 4}  # var of the full-data estimate's noise


def _judged(c, idx, max_at_bound=0.05):
    """Candidates of ``idx`` whose halves sit at a bound on at most ``max_at_bound``; None."""
    j = [i for i in idx if c["at_bound"][i] <= max_at_bound]
    return j or None


def _reference(c, s, judged, ref_rel):
    """The least window reaching reliability ``ref_rel``, at the largest delta; None."""
    refs = [i for i in judged if s["rel"][i] >= ref_rel]
    return min(refs, key=lambda i: (c["window"][i], -c["delta"][i])) if refs else None


def _predicted(s, i, ref):
    if not (s["sig"][i] > 0 and s["rel"][i] > 0 and s["sig"][ref] > 0):
        return -np.inf
    return min(1.0, s["cross"][i, ref] / np.sqrt(s["sig"][i] * s["sig"][ref])) * np.sqrt(
        s["rel"][i])


def rule_correlation(c, idx, ref_rel=0.8):
    """The rule before issue 12's change, on the candidates ``idx``: the largest predicted
    correlation; with no judged candidate the one least at a bound, with no reference the
    most reliable one."""
    s = stats(c)
    judged = _judged(c, idx)
    if judged is None:
        return min(idx, key=lambda i: (c["at_bound"][i], -c["window"][i], -c["delta"][i]))
    ref = _reference(c, s, judged, ref_rel)
    if ref is None:
        return max(judged, key=lambda i: s["rel"][i])
    return max(judged, key=lambda i: _predicted(s, i, ref))


def rule_multi_ref(c, idx, refs=(0.6, 0.7, 0.8, 0.9)):
    """Predicted correlation averaged over references at several reliabilities."""
    s = stats(c)
    judged = _judged(c, idx)
    if judged is None:
        return rule_correlation(c, idx)
    rset = [r for rr in refs if (r := _reference(c, s, judged, rr)) is not None]
    if not rset:
        return rule_correlation(c, idx)
    return max(judged, key=lambda i: np.mean([_predicted(s, i, r) for r in rset]))


def rule_lepski(c, idx, kappa=1.0):
    """Balancing principle: the least noisy candidate whose signal differs from every noisier
    one by at most ``kappa`` times that one's noise variance."""
    s = stats(c)
    judged = _judged(c, idx)
    if judged is None:
        return rule_correlation(c, idx)
    ab = c["AB"]
    order = sorted(judged, key=lambda i: s["noise"][i])
    for i in order:
        ok = True
        for j in judged:
            if s["noise"][j] > s["noise"][i]:
                d = ab[i, i] - ab[i, j] - ab[j, i] + ab[j, j]
                if d > kappa * s["noise"][j]:
                    ok = False
                    break
        if ok:
            return i
    return order[-1]


def _neighbour(c, judged, ref, axis):
    """The judged candidate next to ``ref`` along ``axis`` ("window" or "delta", the other
    bandwidth the same): the next value up, else the next down; None."""
    along, other = (c["window"], c["delta"]) if axis == "window" else (c["delta"], c["window"])
    same = [i for i in judged if other[i] == other[ref] and i != ref]
    up = sorted((i for i in same if along[i] > along[ref]), key=lambda i: along[i])
    down = sorted((i for i in same if along[i] < along[ref]), key=lambda i: -along[i])
    return (up or down or [None])[0]


def extrapolated_reference(c, judged, ref, mode="both"):
    """Weights ``w`` over the candidates such that ``sum_b w_b m_b`` is the reference's map
    with its leading smoothing bias removed, assuming ``m(delta, s) = T + A delta^2 + B s^2``
    near the reference (a mollifier's and a window's bias are both second order): solved from
    the reference and its neighbour along the window (``mode`` "window") or along both axes
    ("both"). Only cross-half products of these maps enter the rule, so the extrapolation's
    noise biases nothing; it adds variance."""
    n = len(c["r"])
    wts = np.zeros(n)
    wts[ref] = 1.0
    d2, s2 = c["delta"] ** 2, c["window"] ** 2
    j = _neighbour(c, judged, ref, "window")
    if j is not None:  # B = (m_j - m_ref) / (s_j^2 - s_ref^2); T -= B s_ref^2
        k = s2[ref] / (s2[j] - s2[ref])
        wts[ref] += k
        wts[j] -= k
    if mode == "both":
        i = _neighbour(c, judged, ref, "delta")
        if i is not None:
            k = d2[ref] / (d2[i] - d2[ref])
            wts[ref] += k
            wts[i] -= k
    return wts


def rule_risk(c, idx, ref_rel=0.0, level=True, mode=None):
    """Smallest estimated mean squared difference to the reference's signal plus noise, plus
    (``level``) the squared noise bias of the level (0 in collections made before it was
    kept). ``mode`` "window" or "both": against the reference with its leading smoothing bias
    extrapolated away (:func:`extrapolated_reference`); None: the product's rule."""
    s = stats(c)
    judged = _judged(c, idx)
    if judged is None:
        return rule_correlation(c, idx)
    ref = _reference(c, s, judged, ref_rel)
    # nothing reaches ref_rel: the most reliable candidate is the reference (the product's)
    ref = max(judged, key=lambda i: s["rel"][i]) if ref is None else ref
    if mode is None:
        wts = np.zeros(len(c["r"]))
        wts[ref] = 1.0
    else:
        wts = extrapolated_reference(c, judged, ref, mode)
    cross = s["cross"]
    lv = np.asarray(c.get("level", np.zeros(len(c["r"])))) if level else np.zeros(len(c["r"]))
    return min(judged, key=lambda i: cross[i, i] - 2 * cross[i] @ wts + s["noise"][i]
               + lv[i] ** 2)


def _base(c) -> list[int]:
    """The candidates of the default grid (before any extension)."""
    return [i for i in range(len(c["r"])) if c["delta"][i] in c["base_d"]
            and c["window"][i] in c["base_s"]]


def simulate(c, rule, **kw) -> int:
    """The product's driver: the rule on the default grid, then once on the grid extended at
    the edges the choice sits at."""
    d, w = c["delta"], c["window"]
    best = rule(c, _base(c), **kw)
    bd, bs = sorted(c["base_d"]), sorted(c["base_s"])
    dd, ss = set(bd), set(bs)
    allw, alld = sorted(set(w)), sorted(set(d))
    if d[best] == bd[-1]:
        dd |= {v for v in alld if v > bd[-1]}
    elif d[best] == bd[0]:
        dd |= {v for v in alld if v < bd[0]}
    if w[best] == bs[-1]:
        ss |= {v for v in allw if v > bs[-1]}
    elif w[best] == bs[0]:
        ss |= {v for v in allw if v < bs[0]}
    if len(dd) > len(bd) or len(ss) > len(bs):
        idx = [i for i in range(len(d)) if d[i] in dd and w[i] in ss]
        best = rule(c, idx, **kw)
    return best


def evaluate(paths: list[Path], rules: dict[str, tuple]) -> None:
    cases = [c for p in paths for c in np.load(p, allow_pickle=True)]
    print(f"{len(cases)} cases")
    for name, (rule, kw) in rules.items():
        gaps, worst = [], ("", 0.0)
        for c in cases:
            rbest = np.nanmax(c["r"][_base(c)])
            i = simulate(c, rule, **kw)
            g = rbest - c["r"][i]
            gaps.append(g)
            if g > worst[1]:
                worst = (c["case"], g)
        g = np.array(gaps)
        fam = {}
        for c, gg in zip(cases, g, strict=True):
            k = c["spec"].split("_")[0]
            fam.setdefault(k, []).append(gg <= 0.02)
        famtxt = " ".join(f"{k} {sum(v)}/{len(v)}" for k, v in fam.items())
        print(f"{name:40s} within 0.02: {np.sum(g <= 0.02):3d}/{len(g)}  mean gap {np.mean(g):.4f}"
              f"  worst {worst[1]:.3f} ({worst[0]})  [{famtxt}]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--seeds", required=True,
                   help="tuning, test, or comma-separated seed values (retired test seeds are "
                   "tuning data)")
    c.add_argument("--specs", default="*")
    c.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("evaluate")
    e.add_argument("path", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "collect":
        import fnmatch

        pats = [p.strip() for p in args.specs.split(",")]
        specs = [s for s in STRESS_SPECS if any(fnmatch.fnmatch(s.name, p) for p in pats)]
        seeds = {"tuning": TUNING_SEEDS, "test": TEST_SEEDS}.get(args.seeds) or tuple(
            int(v) for v in args.seeds.split(","))
        collect(seeds, specs, args.out)
    else:
        rules = {"predicted correlation, reference 0.8 (before)": (rule_correlation, {})}
        for rr in (0.5, 0.6, 0.7, 0.9):
            rules[f"predicted correlation, reference {rr}"] = (rule_correlation, {"ref_rel": rr})
        rules["multi-reference 0.6-0.9"] = (rule_multi_ref, {})
        rules["multi-reference 0.7-0.9"] = (rule_multi_ref, {"refs": (0.7, 0.8, 0.9)})
        for k in (0.25, 0.5, 1.0, 2.0, 4.0):
            rules[f"balancing, kappa {k}"] = (rule_lepski, {"kappa": k})
        for rr in (0.0, 0.5, 0.8):
            rules[f"risk vs reference {rr}"] = (rule_risk, {"ref_rel": rr})
        for rr in (0.5, 0.7):
            for mode in ("window", "both"):
                rules[f"risk vs extrapolated ref {rr} ({mode})"] = (
                    rule_risk, {"ref_rel": rr, "mode": mode})
        evaluate(args.path, rules)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
