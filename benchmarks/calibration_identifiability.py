"""Calibration identifiability on the stress suite: λ with the true, percentile and image calibration.

For each case: r and rmse of λ against the truth from a fixed-bandwidth closed form (δ = max(0.16
µm, 3 px), s = max(0.3 µm, 2.5 px)) on the suite's evaluation pixels, with (a) the true
calibration, (b) ``--calibration auto`` (percentiles) and (c) ``--calibration image``
(:func:`pipeline.calibration.image_calibration`), plus the calibration error of (c) and whether
it was called identifiable (a refused image is scored anyway, as if run, and marked).

    python benchmarks/calibration_identifiability.py --specs 'cam_*2ch*' --seeds 11,23 > rows.jsonl

Every constant of the calibration was chosen on tuning seeds; docs/calibration.md has the
tables and the seed log.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time

import numpy as np
from scipy import ndimage

from pipeline.calibration import image_calibration
from pipeline.estimate.closed_form import identifiable_mask, linear_terms, local_least_squares
from pipeline.physics.chromatin import ChromatinModel
from pipeline.physics.observation import to_fields
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

MODEL = ChromatinModel()


def _region(case, edge_um: float = 1.0) -> np.ndarray:
    padded = np.pad(case.foreground, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * case.pixel_size_um >= edge_um


def _score(img, roles, cals, case, region) -> tuple[float, float]:
    fields = to_fields(img, roles, cals)[0]
    px = case.pixel_size_um
    terms = linear_terms(fields, MODEL, max(0.16, 3 * px), px)
    lam, den = local_least_squares(terms, max(0.3, 2.5 * px), px)
    ok = identifiable_mask(terms, den) & region & np.isfinite(lam)
    a, b = lam[ok], case.lam[ok]
    r = float(np.corrcoef(a, b)[0, 1]) if ok.sum() > 10 and a.std() > 0 else float("nan")
    return r, float(np.sqrt(np.mean((a - b) ** 2))) if ok.any() else float("nan")


def run_case(spec, seed: int) -> dict:
    t0 = time.perf_counter()
    case = make_stress_case(spec, seed)
    roles, img, region = case.channel_names, case.image.astype(float), _region(case)
    row = {"spec": spec.name, "seed": seed, "channels": len(roles),
           "true": _score(img, roles, case.calibration, case, region),
           "auto": _score(img, roles, "auto", case, region)}
    cal, info = image_calibration(img, roles, case.pixel_size_um, seed=0)
    row["image"] = _score(img, roles, cal, case, region)
    row |= {"identifiable": info["identifiable"], "confidence": info["confidence"],
            "source": info["source"]}
    truth = case.calibration
    if len(roles) == 2:
        ic, ih = roles.index("chromatin"), roles.index("heterochromatin")
        ratio = (cal[ih].scale / cal[ic].scale) / (truth[ih].scale / truth[ic].scale)
        row["ratio_error"] = ratio - 1
        row["het_offset_error"] = (truth[ih].offset - cal[ih].offset) * truth[ih].scale
    else:
        row["scale_error"] = cal[0].scale / truth[0].scale - 1
        row["offset_error"] = (truth[0].offset - cal[0].offset) * truth[0].scale
    row["seconds"] = time.perf_counter() - t0
    return row


def rows_main(run_case, description: str, *, channels: int | None = None,
              argv: list[str] | None = None) -> None:
    """The command line of the calibration benchmarks: one JSON row per (spec, seed) of the
    stress specs matching ``--specs`` (and with ``channels`` channels, when given)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--specs", default="*", help="comma-separated name patterns")
    p.add_argument("--seeds", default="11,23,37")
    args = p.parse_args(argv)
    pats = args.specs.split(",")
    for spec in STRESS_SPECS:
        if (channels is None or spec.channels == channels) and any(
                fnmatch.fnmatch(spec.name, pat) for pat in pats):
            for seed in (int(s) for s in args.seeds.split(",")):
                print(json.dumps(run_case(spec, seed), default=float), flush=True)


def main() -> None:
    rows_main(run_case, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
