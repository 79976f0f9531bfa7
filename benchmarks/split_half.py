"""The split-half check (:mod:`pipeline.split_half`) where the truth is known: localisation
tables drawn from stress cases' densities, with frames, split and fitted as ``chromarate
split-half`` does, with the true calibration. Where the std's noise part is right,
``within_90`` comes out near 0.90 and ``z_rms`` near 1; blinking (several localisations of
one molecule in consecutive frames) shows whether blocks of frames keep the halves
independent. Rows: docs/split_half_tuning.json; docs/your-own-images.md has the table.

    python benchmarks/split_half.py --seeds tuning \
        --specs storm_smooth_1ch_dense,storm_smooth_1ch_blink

Only tuning seeds are for choosing anything (docs/stress.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress import seed_list  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.localisations import LocalisationTable  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402
from pipeline.split_half import split_half_check  # noqa: E402

FRAMES = 20000


def draw_table(occupancy: np.ndarray, pixel_size_um: float, locs_per_px: float,
               precision_um: float, locs_per_molecule: float, name: str,
               rng: np.random.Generator, spread: float = 0.0) -> LocalisationTable:
    """Localisations of one channel's ``occupancy``: molecules Poisson per pixel, uniform in
    it; each gives ``1 + Poisson(k - 1)`` localisations in consecutive frames from a random
    start, each jittered by ``precision_um``; coordinates in µm from the grid's origin.
    ``spread`` > 0: each localisation's own precision is ``precision_um x exp(spread x
    N(0, 1))`` (jitter and ``precision`` column; benchmarks/rendering_kernels.py)."""
    ny, nx = occupancy.shape
    mol = rng.poisson(locs_per_px * np.clip(occupancy, 0, None) / locs_per_molecule).ravel()
    pix = np.repeat(np.arange(mol.size), mol)
    my, mx = pix // nx + rng.random(pix.size), pix % nx + rng.random(pix.size)
    start = rng.integers(0, FRAMES, pix.size)
    reps = 1 + rng.poisson(locs_per_molecule - 1.0, pix.size) if locs_per_molecule > 1 \
        else np.ones(pix.size, np.int64)
    my, mx, start = np.repeat(my, reps), np.repeat(mx, reps), np.repeat(start, reps)
    offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    frame = start + offset
    prec = precision_um * np.exp(spread * rng.normal(size=my.size)) if spread else precision_um
    s = prec / pixel_size_um
    y = (my + rng.normal(0, 1, my.size) * s) * pixel_size_um
    x = (mx + rng.normal(0, 1, mx.size) * s) * pixel_size_um
    keep = (x >= 0) & (y >= 0)
    return LocalisationTable(name, "simulated", pd.DataFrame({
        "x": x[keep], "y": y[keep], "precision": prec[keep] if spread else precision_um,
        "channel": name, "frame": frame[keep]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="tuning")
    ap.add_argument("--specs", default="storm_smooth_1ch_dense,storm_smooth_1ch_blink,"
                    "storm_step_1ch_px30,storm_smooth_2ch_px15")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for name in args.specs.split(","):
        spec = next(s for s in STRESS_SPECS if s.name == name)
        for seed in seed_list(args.seeds):
            case = make_stress_case(spec, seed)
            rng = np.random.default_rng(seed)
            tables = [draw_table(o, case.pixel_size_um, spec.locs_per_px,
                                 spec.precision_nm * 1e-3, spec.locs_per_molecule,
                                 role, rng)
                      for o, role in zip(case.occupancy, case.channel_names, strict=True)]
            # the true calibration of a rendering in localisations per pixel (as the stress
            # suite passes the true pairs)
            settings = Settings(method="closed-form", channels=list(case.channel_names),
                                calibration=[{"offset": 0.0, "scale": 1.0 / spec.locs_per_px}]
                                * len(case.channel_names))
            out = split_half_check(tables, case.pixel_size_um, settings)
            row = {"case": case.name} | {k: out[k] for k in (
                "delta_um", "window_um", "pixels", "within_90", "z_rms", "z_median_abs")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
