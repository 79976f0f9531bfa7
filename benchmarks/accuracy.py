"""Both methods on the simulator's own cases at a tuning seed -> docs/accuracy_tuning.md.

Every lambda kind x both channel models x three noise levels, 256 x 256 at 0.02 um, exact
calibration. For each case: the closed form's automatic bandwidth (no ground truth) against
the best fixed (delta, s) of a sweep over the same grid (which does use the truth), and the
neural fit with its default settings beside it, with the calibration of its std (the fraction
of identifiable interior pixels with ``|lam - mean| <= 1.645 std``; target 0.85-0.95).
Pearson r of lambda with the truth on identifiable pixels at least 16 px from the border.

    python benchmarks/accuracy.py            # writes docs/accuracy_tuning.md
    python benchmarks/accuracy.py --no-neural --out /tmp/cf.md   # closed form only
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from pipeline.config import Settings
from pipeline.estimate import coverage, fit_plane, linear_terms, local_least_squares
from pipeline.estimate.bandwidth import DEFAULT_DELTAS_PX, DEFAULT_WINDOWS_PX
from pipeline.estimate.closed_form import identifiable_mask
from pipeline.metrics import interior_r
from pipeline.physics import ChromatinModel
from pipeline.physics.observation import to_fields
from pipeline.simulate import simulate_case

PX = 0.02
BORDER = 16
TUNING_SEEDS = (0, 11, 23, 37)
"""Every rule and default was chosen on these (seed 37 was once called held out; it was looked
at and rules were changed after, so it is tuning data). The held-out tables are the stress
suite's test seeds (benchmarks/stress.py)."""
DEFAULT_SEED = 37


def sweep(fields, truth, model):
    best = (-np.inf, None, None)
    for dpx in DEFAULT_DELTAS_PX:
        terms = linear_terms(fields, model, dpx * PX, PX)
        for spx in DEFAULT_WINDOWS_PX:
            lam, den = local_least_squares(terms, spx * PX, PX)
            r = interior_r(lam, truth, identifiable_mask(terms, den))
            if np.isfinite(r) and r > best[0]:
                best = (r, dpx, spx)
    return best


def neural_row(fields, truth, model) -> dict:
    t0 = time.time()
    nn = fit_plane(fields, model, PX, Settings(method="neural", device="cpu"))
    return {
        "r": interior_r(nn.mean, truth, nn.identifiable),
        "cal": coverage(nn.mean, nn.std, truth, nn.identifiable, border_px=BORDER),
        "t": time.time() - t0,
        "diverged": bool(nn.record["tiles_diverged"]),
    }


def neural_summary(nn_rows: list[dict]) -> list[str]:
    if not nn_rows:
        return ["- neural: not run (`--no-neural`)."]
    d = np.array([r["r"] - r["r_cf"] for r in nn_rows])
    cal = np.array([r["cal"] for r in nn_rows])
    t_total = sum(r["t"] for r in nn_rows)
    return [
        f"- neural r >= closed-form r: {int((d >= 0).sum())} of {len(d)} cases; mean "
        f"difference {d.mean():+.4f}, worst {d.min():+.3f}, best {d.max():+.3f}; within 0.01: "
        f"{int((np.abs(d) <= 0.01).sum())} of {len(d)}.",
        f"- neural calibration in 0.85-0.95: {int(((cal >= 0.85) & (cal <= 0.95)).sum())} of "
        f"{len(cal)}; below: {int((cal < 0.85).sum())}; above: {int((cal > 0.95).sum())}; "
        f"median {np.median(cal):.2f}, range {cal.min():.2f}-{cal.max():.2f}.",
        f"- neural fits that diverged: {sum(r['diverged'] for r in nn_rows)}; neural time for "
        f"all {len(d)} cases {t_total:.0f} s.",
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "accuracy_tuning.md")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"case seed (tuning seeds: {TUNING_SEEDS})")
    ap.add_argument("--no-neural", action="store_true", help="closed form only (about 1 minute)")
    args = ap.parse_args(argv)
    model = ChromatinModel()
    rows, nn_rows = [], []
    t_start = time.time()
    for kind in ("smooth", "lognormal", "step"):
        for channels in (1, 2):
            for noise in (0.01, 0.02, 0.05):
                case = simulate_case(kind=kind, channels=channels, noise=noise,
                                     shape=(args.size, args.size), pixel_size_um=PX, seed=args.seed)
                roles = ("heterochromatin",) if channels == 1 else ("chromatin", "heterochromatin")
                fields = to_fields(case.image, roles, case.calibration, clip=False)[0]
                t0 = time.time()
                res = fit_plane(fields, model, PX, Settings(method="closed-form"))
                t_auto = time.time() - t0
                r_auto = interior_r(res.mean, case.lam, res.identifiable)
                cov_cf = coverage(res.mean, res.std, case.lam, res.identifiable, border_px=BORDER)
                r_best, dpx, spx = sweep(fields, case.lam, model)
                rows.append((kind, channels, noise, r_auto, res.bandwidth["delta_um"],
                             res.bandwidth["window_um"], r_best, dpx * PX, spx * PX,
                             float(res.identifiable.mean()), t_auto, cov_cf))
                print(rows[-1], flush=True)
                if not args.no_neural:
                    nn_rows.append(neural_row(fields, case.lam, model) | {"r_cf": r_auto})
                    print(nn_rows[-1], flush=True)
    lines = [
        "# Accuracy on synthetic ground truth",
        "",
        "Generated by `python benchmarks/accuracy.py` "
        f"({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{time.time() - t_start:.0f} s in all). Do not edit by hand.",
        "",
        f"Cases: {args.size}x{args.size} px at {PX} um (a {args.size * PX:.2f} um field), the "
        "simulator's defaults (smooth lambda: wavelengths 1.6-2.6 um; lognormal: correlation "
        f"0.8 um; step: two regions, edge 0.1 um), seed {args.seed}. Noise is the std of the calibrated "
        "field at mid intensity (Poisson photons + read noise, PSF sigma 0.015 um). Exact "
        "calibration. r: Pearson correlation of lambda with the truth on identifiable pixels at "
        f"least {BORDER} px from the border.",
        "",
        "**auto**: bandwidths chosen without ground truth (the smallest predicted squared error "
        "from a noise split, see `pipeline/estimate/bandwidth.py`). **best fixed**: the best "
        "(delta, s) of the same 7 x 7 grid, found with the truth (an upper bound no user can "
        "reach).",
        "",
        "**neural**: `--method neural` with its defaults (the closed form's automatic "
        "bandwidths, `NeuralSettings()`), its mean's r and the calibration of its std. "
        "**time**: seconds for this 256 x 256 plane on 2 shared CPU cores.",
        "",
        "| lambda | channels | noise | r auto | delta, s auto (um) | r best fixed | delta, s best (um) | gap | identifiable | coverage closed form | r neural | neural - auto | coverage neural | time cf / neural (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (kind, ch, noise, ra, da, sa, rb, db, sb, ident, t, cov) in enumerate(rows):
        nn = nn_rows[i] if nn_rows else None
        neural = (f"{nn['r']:.3f} | {nn['r'] - ra:+.3f} | {nn['cal']:.2f} | {t:.1f} / {nn['t']:.1f}"
                  if nn else f"- | - | - | {t:.1f} / -")
        lines.append(
            f"| {kind} | {ch} | {noise} | {ra:.3f} | {da:.2f}, {sa:.2f} | {rb:.3f} | "
            f"{db:.2f}, {sb:.2f} | {rb - ra:+.3f} | {ident:.2f} | {cov:.2f} | {neural} |"
        )
    gaps = np.array([r[6] - r[3] for r in rows])
    mod = [r for r in rows if r[2] == 0.02]
    lines += [
        "",
        "## Against the targets",
        "",
        f"- r >= 0.97 at moderate noise (0.02), automatic bandwidth: "
        f"{sum(r[3] >= 0.97 for r in mod)} of {len(mod)} cases "
        f"(single-channel {sum(r[3] >= 0.97 for r in mod if r[1] == 1)}/3, "
        f"two-channel {sum(r[3] >= 0.97 for r in mod if r[1] == 2)}/3); the best fixed "
        f"bandwidth (with the truth) reaches it on {sum(r[6] >= 0.97 for r in mod)} of "
        f"{len(mod)}.",
        f"- within 0.01 of the best fixed bandwidth: {int((gaps <= 0.01).sum())} of {len(rows)} "
        f"cases; mean gap {gaps.mean():.3f}, worst {gaps.max():.3f}.",
    ] + neural_summary(nn_rows) + [
        "",
        "## What limits it",
        "",
        "- **Two-channel images.** The nucleoplasm domains (about 0.1 um) are sharp at the "
        "mollifier's scale. Taking lap(mu_d) by the chain rule on mollified phi_h made large "
        "terms cancel badly there (best fixed r 0.96-0.98 at noise 0.02); mollifying g(phi_h) "
        "as a field of its own (the conservative form, now the default) lifted it to "
        "0.97-0.99 and left single-channel cases unchanged (`pipeline/physics/chromatin.py`).",
        "- **Length scale of lambda.** The steady state is a diffused copy of the local "
        "equilibrium (reaction-diffusion length about 0.4 um), so lambda varying faster than "
        "about 1 um is attenuated in the image. With the simulator's earlier defaults "
        "(wavelengths 0.6-1.5 um) the best fixed r at noise 0.02 was 0.92 (one channel) and "
        "0.77 (two channels); the defaults were lengthened so that the table measures the "
        "estimator rather than an unidentifiable case, and that limit is stated here.",
        "- **Auto-calibration.** With `--calibration auto` (percentiles mapped to 0 and "
        "phi_max), the fields of these synthetic images are stretched well beyond their true "
        "range and r falls (sample data: 0.93 one-channel, 0.07 two-channel). Absolute "
        "lambda needs a calibrated microscope; pass `--calibration OFFSET:SCALE`.",
        "- **The grid's edge.** For these smooth lambda maps the best fixed delta is often the "
        "grid's largest (18 px = 0.36 um). On a grid extended to 27 px (seed 11, measured while "
        "choosing the rule) the best fixed r rose by up to 0.005 (smooth, one channel), but the "
        "automatic choice fell further behind it (mean gap 0.009, worst 0.033), so the default "
        "grid stays at 18 px; `--delta` accepts larger values.",
        "",
        "## How the rule was chosen",
        "",
        "Every candidate's split statistics and true r were recorded for the 18 cases at seeds "
        "0, 11 and 23 (54 cases), and rules were compared offline on them. Seed 37 was first "
        "reported as held out, but it was looked at and rules were changed after, so it is "
        f"tuning data too: **this table (seed {args.seed}) is a tuning table, not a held-out "
        "one.** Held-out numbers come from the stress suite's test seeds "
        "(`benchmarks/stress.py`, docs/stress.md). Mean / worst gap to the best fixed "
        "bandwidth over the tuning set, and the fraction within 0.01:",
        "",
        "- least smoothing (delta_px + s_px) with split reliability >= 0.97 (shipped before): "
        "0.022 / 0.154, 33 %; it under-smooths the fields: the best delta is large, and "
        "reliability does not see that delta costs little bias;",
        "- the same with only the window counted (least s, then least delta): 0.008 / 0.154, "
        "94 %; one case (two channels, noise 0.05) where nothing reaches 0.97 falls back to the "
        "widest window;",
        "- predicted correlation against a reference at the same delta: 0.003 / 0.013-0.53 "
        "depending on the reference threshold (references of different delta are not "
        "comparable);",
        "- predicted correlation against one reference, the least window with reliability >= "
        "0.8 (shipped until issue 12): 0.0016 / 0.020, 98 %; the same for reference thresholds "
        "0.5-0.9 within 0.001;",
        "- since issue 12: the smallest predicted squared error against the least window with "
        "reliability >= 0.5, chosen on 276 stress-suite tuning cases (camera, STORM-like, "
        "nuclei; [bandwidth.md](bandwidth.md)), where the predicted correlation leaned to wide "
        "windows; this table was not used for it;",
        "- earlier, on the simulator's older defaults: cross-split mean squared difference to a "
        "lightly smoothed reference (gaps up to 0.6), MSE or bias estimates against the "
        "least-smoothed candidate (unstable, up to 1.9), reliability x disattenuated "
        "correlation with the least-smoothed candidate (up to 0.16: its reproducible noise "
        "bias counts as signal).",
        "",
        "The std (the members' spread plus the smoothing-bias and noise-bias terms) is described "
        "in [uncertainty.md](uncertainty.md); the neural method in [neural.md](neural.md).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
