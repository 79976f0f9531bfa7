"""What the closed form's error is made of, case by case: noise or bias.

Each stress case is drawn ``--draws`` times with the same λ, φ_w and nucleus and fresh noise
(:func:`pipeline.simulate.stress.make_stress_case`'s ``noise_draw``), and every draw is fitted
through the product's fit path (:func:`benchmarks.stress.fit`, bandwidths chosen per draw).
On the evaluation pixels:

- ``noise_sd``: the spread of λ between draws (what the noise does; the std's members
  estimate it from one image);
- ``bias_rms``: the mean over draws minus the truth (what no amount of photons removes at
  this bandwidth; the std's bias term estimates it), its finite-draw noise subtracted;
- ``std``: the product's std (median over pixels and draws); ``rmse`` and ``coverage`` of
  the 90 % interval, over all draws.

    python benchmarks/noise_replicates.py --seeds tuning --specs 'storm_*' --draws 6

Only tuning seeds are for choosing anything (docs/stress.md).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress import Z90, evaluation_region, fit, seed_list  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402


def replicate_case(spec, seed: int, draws: int, method: str = "closed-form") -> dict:
    """Fit ``draws`` noise draws of one case; the error's parts on its evaluation pixels."""
    means, stds, oks = [], [], []
    truth = region = None
    name = ""
    for k in range(draws):
        case = make_stress_case(spec, seed, noise_draw=k)
        name = name or case.name
        region = evaluation_region(case) if region is None else region
        truth = case.lam
        mean, std, ident = fit(case.image, case, method)
        means.append(mean.astype(float))
        stds.append(std.astype(float))
        oks.append(ident & np.isfinite(mean) & np.isfinite(std))
    ok = region & np.logical_and.reduce(oks)
    m = np.stack(means)[:, ok]
    s = np.stack(stds)[:, ok]
    t = truth[ok]
    var = m.var(axis=0, ddof=1)
    bias2 = np.maximum((m.mean(axis=0) - t) ** 2 - var / draws, 0.0)
    err = m - t
    return {
        "case": name, "spec": spec.name, "seed": seed, "draws": draws, "pixels": int(ok.sum()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "noise_sd": float(np.sqrt(np.mean(var))),
        "bias_rms": float(np.sqrt(np.mean(bias2))),
        "std_median": float(np.median(s)),
        "std_rms": float(np.sqrt(np.mean(s**2))),
        "coverage": float(np.mean(np.abs(err) <= Z90 * s)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="tuning")
    ap.add_argument("--specs", default="*")
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--method", default="closed-form")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    specs = [s for s in STRESS_SPECS
             if any(fnmatch.fnmatch(s.name, p) for p in a.specs.split(","))]
    rows = []
    print("| case | rmse | noise sd | bias rms | std (rms) | coverage |")
    print("|---|---|---|---|---|---|")
    for seed in seed_list(a.seeds):
        for spec in specs:
            r = replicate_case(spec, seed, a.draws, a.method)
            rows.append(r)
            print(f"| {r['case']} | {r['rmse']:.3f} | {r['noise_sd']:.3f} | {r['bias_rms']:.3f}"
                  f" | {r['std_rms']:.3f} | {r['coverage']:.2f} |", flush=True)
            if a.out:
                a.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
