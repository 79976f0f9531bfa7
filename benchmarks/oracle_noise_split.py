"""Is a bandwidth miss on a STORM rendering the noise model's? An oracle split.

The automatic bandwidth's noise split draws ``z`` from the fitted noise model
(:mod:`pipeline.estimate.noise`). Here ``z`` is instead a **second realisation of the stress
simulator's own noise**: the same occupancy rendered again with new localisations, calibrated
as the case is, ``z = (F2 - F1) / sqrt(2)``. If the choice then reaches the best fixed
bandwidth, the noise model is what failed; if not, the rule is. Everything else is the
product's fit (``benchmarks/stress.py``'s adapter).

    python benchmarks/oracle_noise_split.py --specs storm_smooth_1ch_blink,storm_smooth_1ch_dense --seeds 11,23

Tuning data only (tuning or retired test seeds): it uses the truth's noise, so it must not
choose anything on test seeds.
STORM specs only (with or without a nucleus).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stress as bench  # noqa: E402

import pipeline.estimate.bandwidth as bandwidth  # noqa: E402
from pipeline.calibration import calibrate_plane  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.estimate.bandwidth import central_crop  # noqa: E402
from pipeline.simulate.storm import render_storm  # noqa: E402
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    TUNING_SEEDS,
    is_tuning_data,
    make_stress_case,
)

_ORACLE: dict[str, np.ndarray | None] = {"z": None}
_model_halves = bandwidth._halves


def _halves(f: np.ndarray, models, seed: int) -> np.ndarray:
    """The split's halves with the oracle's ``z`` (cropped as the choice crops) when set."""
    z = _ORACLE["z"]
    if z is None:
        return _model_halves(f, models, seed)
    z = central_crop(z, f.shape[-1]) if z.shape[-2:] != f.shape[-2:] else z
    return np.stack([f + z, f - z, f])


def second_rendering(spec, case, seed: int) -> np.ndarray:
    """The case's occupancy rendered again as a STORM image: the same expectation, new
    localisations (stream ``seed + 999``)."""
    return render_storm(case.occupancy, pixel_size_um=case.pixel_size_um,
                        locs_per_px=spec.locs_per_px, precision_um=spec.precision_nm / 1000,
                        background=spec.background, locs_per_molecule=spec.locs_per_molecule,
                        rng=seed + 999)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default="storm_smooth_1ch_blink")
    ap.add_argument("--seeds", default=",".join(map(str, TUNING_SEEDS)))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if not all(map(is_tuning_data, seeds)):
        ap.error(f"tuning data only: {TUNING_SEEDS} or a retired test seed")
    bandwidth._halves = _halves  # the driver's reference to the halves
    names = args.specs.split(",")
    print("| case | split | r | delta, s (px) |\n|---|---|---|---|")
    for seed in seeds:
        for spec in (s for s in STRESS_SPECS if s.name in names):
            if spec.rendering != "storm":
                raise SystemExit(f"{spec.name}: STORM specs only")
            case = make_stress_case(spec, seed)
            settings = Settings(method="closed-form", calibration=case.calibration_given)
            f1, _ = calibrate_plane(case.image, case.channel_names, settings, case.pixel_size_um)
            again = second_rendering(spec, case, seed)
            f2, _ = calibrate_plane(again, case.channel_names, settings, case.pixel_size_um)
            for split, z in (("noise model", None), ("oracle", (f2 - f1) / np.sqrt(2))):
                _ORACLE["z"] = z
                info: dict = {}
                mean, std, ident = bench.fit(case.image, case, "closed-form", info)
                sc = bench.score(mean.astype(float), std.astype(float), ident, case.lam,
                                 bench.evaluation_region(case))
                px = case.pixel_size_um
                print(f"| {case.name} | {split} | {sc['r']:.3f} | "
                      f"{info['delta_um'] / px:.0f}, {info['window_um'] / px:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
