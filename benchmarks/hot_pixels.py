"""Hot and dead pixels: what single-pixel defects do to λ, with and without their replacement.

CMOS cameras have hot pixels: single pixels with a high dark current, bright in every frame
(typically 0.01–0.1 % of the sensor), and a few dead ones. Each stress case is drawn once and
a random ``--fractions`` of its pixels gets ``--excess`` ADU added in every channel (the same
pixels in all channels, as on one sensor), or is set to 0 (``dead`` rows); each image is then
fitted as the product fits it (:func:`benchmarks.stress.fit`), with ``--defect-pixels
replace`` (the default) and ``off``, and scored as the stress suite scores. ``found`` and
``false`` count the defects :func:`pipeline.defect_pixels.defect_pixels_replaced` replaced at
a planted pixel and elsewhere (all channels).

Results: docs/your-own-images.md ("Hot and dead pixels").

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
    CAMERA_SPECS,
    add_case_arguments,
    evaluation_region,
    fit_scored,
    seed_list,
    write_rows,
)
from pipeline.defect_pixels import THRESHOLD, defect_test  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402

MODES = ("off", "replace")


def with_defects(image: np.ndarray, fraction: float, excess: float | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (C, Y, X) uint16 with ``fraction`` of its pixels raised by ``excess`` ADU in
    every channel (``excess=None``: set to 0, dead); and the planted pixels' mask."""
    bad = rng.random(image.shape[-2:]) < fraction
    out = image.astype(np.float64)
    if excess is None:
        out[:, bad] = 0
    else:
        out[:, bad] += excess
    return np.clip(out, 0, np.iinfo(np.uint16).max).astype(np.uint16), bad


def detection(image: np.ndarray, planted: np.ndarray) -> dict[str, int]:
    """Pixels over the defect test's threshold at planted pixels and elsewhere (summed over
    channels; before the too-many guard)."""
    found = false = 0
    for ch in image:
        hit = np.abs(defect_test(ch)[0]) > THRESHOLD
        found += int(np.count_nonzero(hit & planted))
        false += int(np.count_nonzero(hit & ~planted))
    return {"found": found, "false": false}


def run(specs: tuple[str, ...], seeds: tuple[int, ...], fractions: tuple[float, ...],
        excesses: tuple[float, ...], dead: bool) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    kinds: list[float | None] = [*excesses, *([None] if dead else [])]
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            plan = [(0.0, None)] + [(f, e) for f in fractions if f > 0 for e in kinds]
            for fraction, excess in plan:
                image, planted = with_defects(case.image, fraction, excess,
                                              np.random.default_rng([seed, 99]))
                base = {"spec": name, "seed": seed, "fraction": fraction,
                        "planted_px": int(planted.sum()),
                        "excess_adu": "dead" if excess is None and fraction else excess}
                base |= detection(image, planted)
                for mode in MODES:
                    row = base | {"defect_pixels": mode}
                    row |= fit_scored(image, case, region, defect_pixels=mode)
                    rows.append(row)
                    print(f"{name} s{seed} {fraction:g} x {base['excess_adu']} "
                          f"({base['planted_px']} px; found {base['found']}, false "
                          f"{base['false']}) {mode}: r {row['r']:.3f} rmse {row['rmse']:.3f} "
                          f"coverage {row['coverage']:.2f} window {row['window_px']:.1f} px",
                          flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, CAMERA_SPECS)
    ap.add_argument("--fractions", default="0.0001,0.001",
                    help="fractions of defect pixels (default: 0.0001,0.001)")
    ap.add_argument("--excess", default="2000,500,200",
                    help="ADU a hot pixel adds, comma-separated (default: 2000,500,200)")
    ap.add_argument("--no-dead", action="store_true", help="leave out dead pixels")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    rows = run(tuple(args.specs.split(",")), seeds,
               tuple(float(f) for f in args.fractions.split(",")),
               tuple(float(e) for e in args.excess.split(",")), not args.no_dead)
    write_rows(args.out, seeds, rows, threshold=THRESHOLD)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
