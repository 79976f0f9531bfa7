"""One neural variant on one stress case at a tuning seed: r, rmse, coverage and the tile
diagnostics (the median over tiles of the misfit, residual and residual weight).

Settings of ``NeuralSettings`` are given as JSON; ``--w-start`` / ``--w-step`` override the
discrepancy controller's constants (``--w-step 1`` holds the residual weight fixed).

    python benchmarks/neural_variant.py cam_lognormal_2ch 11 '{"epochs": 0}'   # warm start only
    python benchmarks/neural_variant.py cam_lognormal_2ch 11 '{}' --w-step 1 --w-start 0.01

Tuning data only (tuning or retired test seeds): it is for choosing, and choosing on test
seeds is not allowed (docs/stress.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stress as bench  # noqa: E402

import pipeline.estimate.neural as neural  # noqa: E402
from pipeline.estimate.uncertainty import coverage  # noqa: E402
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    TUNING_SEEDS,
    is_tuning_data,
    make_stress_case,
)

DIAGNOSTICS = ("data_start", "data", "residual", "residual_weight", "lambda_change")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("seed", type=int)
    ap.add_argument("variant", nargs="?", default="{}", help="NeuralSettings fields as JSON")
    ap.add_argument("--w-start", type=float, default=neural.W_START)
    ap.add_argument("--w-step", type=float, default=neural.W_STEP)
    args = ap.parse_args(argv)
    if not is_tuning_data(args.seed):
        ap.error(f"tuning data only: {TUNING_SEEDS} or a retired test seed")
    spec = next((s for s in STRESS_SPECS if s.name == args.spec), None)
    if spec is None:
        ap.error(f"no stress spec {args.spec!r}")
    neural.W_START, neural.W_STEP = args.w_start, args.w_step
    variant = json.loads(args.variant)
    case = make_stress_case(spec, args.seed)
    info: dict = {}
    mean, std, ident = bench.fit(case.image, case, "neural", info, neural=variant)
    ok = bench.evaluation_region(case) & ident & np.isfinite(mean)
    r = bench.interior_r(mean, case.lam, ok, border_px=0)
    rmse = float(np.sqrt(np.mean((mean - case.lam)[ok] ** 2)))
    cov = coverage(mean, std, case.lam, ok)
    tiles = info["tiles"]
    diag = {k: round(float(np.median([t[k] for t in tiles if k in t])), 3)
            for k in DIAGNOSTICS if any(k in t for t in tiles)}
    print(f"{case.name} {variant} w_start {args.w_start} w_step {args.w_step}: r {r:.3f} "
          f"rmse {rmse:.3f} coverage {cov:.2f} tiles {len(tiles)} {diag}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
