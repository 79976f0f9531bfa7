"""Hot pixels: what a few single-pixel spikes do to λ (a measurement; nothing corrects them yet).

CMOS cameras have hot pixels: single pixels with a high dark current, bright in every frame
(typically 0.01–0.1 % of the sensor). Each stress case is drawn once and a random
``--fraction`` of its pixels gets ``--excess`` ADU added in every channel (the same pixels
in all channels, as on one sensor), then fitted as the product fits it
(:func:`benchmarks.stress.fit`) and scored as the stress suite scores.

Results: docs/your-own-images.md ("Hot pixels").

    python benchmarks/hot_pixels.py --seeds tuning --out docs/stress_runs/hot_pixels_tuning.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress import (  # noqa: E402
    add_case_arguments,
    evaluation_region,
    fit_scored,
    seed_list,
    write_rows,
)
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402

SPECS = ("cam_smooth_1ch", "cam_lognormal_2ch", "cam_step_1ch_px30", "nuc_cam_smooth_1ch")
"""Camera designs: one and two channels, three λ kinds, a nucleus in a dark background."""


def with_hot_pixels(image: np.ndarray, fraction: float, excess: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``image`` (C, Y, X) uint16 with ``fraction`` of its pixels raised by ``excess`` ADU
    in every channel; and how many pixels that was."""
    hot = rng.random(image.shape[-2:]) < fraction
    out = image.astype(np.float64)
    out[:, hot] += excess
    return np.clip(out, 0, np.iinfo(np.uint16).max).astype(np.uint16), int(hot.sum())


def run(specs: tuple[str, ...], seeds: tuple[int, ...], fractions: tuple[float, ...],
        excess: float) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            for fraction in fractions:
                image, n_hot = with_hot_pixels(case.image, fraction, excess,
                                               np.random.default_rng([seed, 99]))
                row = {"spec": name, "seed": seed, "fraction": fraction, "hot_px": n_hot,
                       "excess_adu": excess}
                row |= fit_scored(image, case, region)
                rows.append(row)
                print(f"{name} s{seed} hot {fraction:g} ({n_hot} px): r {row['r']:.3f} "
                      f"rmse {row['rmse']:.3f} coverage {row['coverage']:.2f} window "
                      f"{row['window_px']:.1f} px", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, SPECS)
    ap.add_argument("--fractions", default="0,0.0001,0.001",
                    help="fractions of hot pixels (default: 0,0.0001,0.001)")
    ap.add_argument("--excess", type=float, default=2000.0,
                    help="ADU a hot pixel adds (default: 2000)")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    rows = run(tuple(args.specs.split(",")), seeds,
               tuple(float(f) for f in args.fractions.split(",")), args.excess)
    write_rows(args.out, seeds, rows, excess_adu=args.excess)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
