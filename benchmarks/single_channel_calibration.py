"""One channel without a calibration: what the default ``--calibration image`` keeps of λ.

A single-channel image whose field lies inside a nucleus has no background, so without a dark
frame nothing in it gives the camera's dark level. The default then assumes offset 0 (at or
below any camera's or rendering's true dark level) and a nuclear median φ_h of φ_max / 2
(:func:`pipeline.calibration.image_calibration`). Before, it used the percentile rule (the
darkest pixels at zero occupancy, the brightest at φ_max), which is still
``--calibration auto``. Every one-channel design of the stress suite without a background is
fitted both ways as the product fits it (:func:`benchmarks.stress.fit`) and scored as the
stress suite scores; ``--with-pairs`` adds the case's own pairs (its calibration, with the
design's deliberate error).

λ's level is not identified from one channel either way (docs/calibration.md), so r is the
measure here; rmse and coverage carry the level's error.

    python benchmarks/single_channel_calibration.py --seeds tuning \\
        --out docs/stress_runs/single_channel_calibration_tuning.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

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

SPECS = tuple(s.name for s in STRESS_SPECS if s.channels == 1 and not s.nucleus)
"""The one-channel designs whose field lies inside the nucleus (no background)."""


def run(specs: tuple[str, ...], seeds: tuple[int, ...], modes: tuple[str, ...]) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            for mode in modes:
                given = case.calibration_given if mode == "pairs" else mode
                row = {"spec": name, "seed": seed, "calibration": mode}
                row |= fit_scored(case.image, dataclasses.replace(case, calibration_given=given),
                                  region)
                rows.append(row)
                print(f"{name} s{seed} {mode:>6}: r {row['r']:.3f} rmse {row['rmse']:.3f} "
                      f"coverage {row['coverage']:.2f} window {row['window_px']:.1f} px",
                      flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, SPECS)
    ap.add_argument("--with-pairs", action="store_true", help="also fit with the case's pairs")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    modes = ("image", "auto", *(("pairs",) if args.with_pairs else ()))
    write_rows(args.out, seeds, run(tuple(args.specs.split(",")), seeds, modes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
