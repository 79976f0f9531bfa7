"""Images whose background was subtracted before chromarate saw them (a measurement).

ImageJ's *Process › Subtract Background* (a rolling ball of radius 50 px by default) is among
the first things users do to a fluorescence image. It removes the camera offset and, with it,
every intensity change smoother than the ball: in a field inside a nucleus, that is part of
the chromatin's own structure. Each camera design below is drawn once, background-subtracted
per channel (:func:`skimage.restoration.rolling_ball`, negative values clipped to 0 and
rounded back to 16-bit, as ImageJ keeps a 16-bit image) and fitted as the product fits it
(:func:`benchmarks.stress.fit`) twice: with the case's pairs and offset 0 (a user who knows
the offset is gone) and with ``--calibration image`` (the default). The unsubtracted image is
fitted the same two ways. Scored as the stress suite scores.

No constant was chosen on these runs; they measure. Results: docs/your-own-images.md
("Background-subtracted images").

    python benchmarks/background_subtracted.py --seeds tuning \\
        --out docs/stress_runs/background_subtracted_tuning.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.preprocessed import filtered  # noqa: E402
from benchmarks.stress import (  # noqa: E402
    CAMERA_SPECS,
    add_case_arguments,
    evaluation_region,
    fit_scored,
    seed_list,
    write_rows,
)
from pipeline.config import Calibration  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402

RADIUS_PX = 50
"""ImageJ's default rolling-ball radius."""


def _rolling_ball(plane: np.ndarray) -> np.ndarray:
    from skimage.restoration import rolling_ball

    return plane - rolling_ball(plane, radius=RADIUS_PX)


def run(specs: tuple[str, ...], seeds: tuple[int, ...]) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            for label, how in (("as recorded", None), ("rolling ball 50 px", _rolling_ball)):
                image = filtered(case.image, how)
                offset0 = tuple(Calibration(offset=0.0, scale=c.scale)
                                for c in case.calibration_given)
                for cal_label, given in (("pairs" if how is None else "pairs, offset 0",
                                          case.calibration_given if how is None else offset0),
                                         ("image", "image")):
                    row = {"spec": name, "seed": seed, "image": label, "calibration": cal_label,
                           "zero_fraction": float(np.mean(image == 0))}
                    row |= fit_scored(image, dataclasses.replace(case, calibration_given=given),
                                      region)
                    rows.append(row)
                    print(f"{name} s{seed} {label:>18} / {cal_label:>15}: r {row['r']:.3f} "
                          f"rmse {row['rmse']:.3f} coverage {row['coverage']:.2f} window "
                          f"{row['window_px']:.1f} px", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, CAMERA_SPECS)
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    write_rows(args.out, seeds, run(tuple(args.specs.split(",")), seeds), radius_px=RADIUS_PX)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
