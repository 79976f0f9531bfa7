"""Images that were smoothed or denoised before chromarate saw them.

Users often pass an image that went through a filter first: ImageJ's Gaussian blur or its
median filter, or a non-local-means denoiser. Such a filter changes the noise chromarate
measures (smaller, correlated over the filter's width) and smooths the structure λ is read
from. Each camera case of the stress suite is drawn once, filtered per channel as a user
would (rounded back to 16-bit, as ImageJ keeps a 16-bit image), and fitted with the pairs of
the unfiltered image (linear filters keep the level, so the calibration still holds). Every
fit is the product's (:func:`benchmarks.stress.fit`), scored as the stress suite scores,
with the best fixed bandwidth found with the truth on the fields the fit used (the gap),
and whether the run's QC flag ``correlated-noise`` would be raised (a camera's noise is white;
:func:`pipeline.summary.correlated_noise`).

No constant was chosen on these runs; they measure. Results: docs/your-own-images.md
("Smoothed or denoised images").

    python benchmarks/preprocessed.py --seeds tuning --out docs/stress_runs/preprocessed_tuning.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stress import (  # noqa: E402
    add_case_arguments,
    best_fixed,
    evaluation_region,
    fit_scored,
    seed_list,
    write_rows,
)
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    make_stress_case,
)
from pipeline.summary import correlated_noise  # noqa: E402

SPECS = ("cam_smooth_1ch", "cam_lognormal_2ch", "cam_step_1ch_px30", "cam_smooth_2ch_px15",
         "cam_smooth_1ch_dim", "cam_step_2ch_dim", "nuc_cam_smooth_1ch")
"""The suite's camera designs: one and two channels, three λ kinds, 0.015–0.04 µm pixels,
dim and moderate noise, and a nucleus in a dark background."""


def _gaussian(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    from scipy.ndimage import gaussian_filter

    return lambda plane: gaussian_filter(plane, sigma, mode="reflect")


def _median(plane: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(plane, size=3, mode="reflect")


def _nl_means(plane: np.ndarray) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, estimate_sigma

    sigma = float(estimate_sigma(plane))
    return denoise_nl_means(plane, h=0.8 * sigma, sigma=sigma, patch_size=5,
                            patch_distance=6, fast_mode=True)


FILTERS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "as recorded": None,
    "gaussian 1 px": _gaussian(1.0),
    "gaussian 2 px": _gaussian(2.0),
    "median 3x3": _median,
    "non-local means": _nl_means,
}
"""What a user might have done to the image first (per channel, on the 16-bit counts)."""


def filtered(image: np.ndarray, how: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """``image`` (C, Y, X) uint16 through ``how`` per channel, rounded back to uint16."""
    if how is None:
        return image
    out = np.stack([how(np.asarray(ch, np.float64)) for ch in image])
    return np.clip(np.rint(out), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def run(specs: tuple[str, ...], seeds: tuple[int, ...], filters: tuple[str, ...],
        sweep: bool = True) -> list[dict]:
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        for seed in seeds:
            case = make_stress_case(by_name[name], seed)
            region = evaluation_region(case)
            for label in filters:
                image = filtered(case.image, FILTERS[label])
                info: dict = {}
                row = {"spec": name, "seed": seed, "filter": label}
                row |= fit_scored(image, case, region, info)
                # the run's QC flag `correlated-noise`, from the noise the fit recorded
                row["flag_correlated_noise"] = correlated_noise({"noise": info["noise"]})
                row["corr_px"] = [m["corr_length_px"] for m in info["noise"]["channels"]]
                if sweep:
                    row["r_best"], row["delta_best_px"], row["window_best_px"] = best_fixed(
                        info["fields"], case, region, info.get("foreground"))
                rows.append(row)
                print(f"{name} s{seed} {label:>16}: r {row['r']:.3f} "
                      f"(best {row.get('r_best', float('nan')):.3f}) rmse {row['rmse']:.3f} "
                      f"coverage {row['coverage']:.2f} window {row['window_px']:.1f} px"
                      f"{' flagged' if row['flag_correlated_noise'] else ''}",
                      flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, SPECS)
    ap.add_argument("--filters", default=",".join(FILTERS),
                    help=f"comma-separated, of: {', '.join(FILTERS)}")
    ap.add_argument("--no-sweep", action="store_true",
                    help="skip the best fixed bandwidth (faster; no gap)")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    filters = tuple(args.filters.split(","))
    unknown = [f for f in filters if f not in FILTERS]
    if unknown:
        ap.error(f"unknown filter(s) {unknown}; choose from {list(FILTERS)}")
    rows = run(tuple(args.specs.split(",")), tuple(seeds), filters, sweep=not args.no_sweep)
    write_rows(args.out, seeds, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
