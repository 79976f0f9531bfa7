"""Is the closed form's error on a STORM case bias or noise? A split with the truth.

At the bandwidth the product chooses, the closed form is computed three times: on the case's
fields, on the **noise-free** fields (the simulator's expected rendering, calibrated as the case
is) and on a **second rendering** of the same density. Over the scored pixels (as
``benchmarks/stress.py`` scores them):

- ``bias``: rms of (noise-free map − truth), the error the bandwidth itself causes, and two
  parts of it: ``blur`` (noise-free map − the map of the unblurred density, the part the
  localisation blur causes) and ``level`` (the mean of noise-free map − truth);
- ``noise``: rms of (map − noise-free map), and the spread of two renderings, rms/sqrt(2);
- the product's std, and its forward bias term
  (:func:`pipeline.estimate.uncertainty.window_bias`; since 2026-12-07 the std takes the larger
  of it and :func:`~pipeline.estimate.uncertainty.attenuation_bias`).

    python benchmarks/bias_noise_split.py storm_smooth_2ch_px15 11,23,37

Tuning data only (tuning or retired test seeds; it uses the truth). STORM specs without a
nucleus only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stress as bench  # noqa: E402
from oracle_noise_split import second_rendering  # noqa: E402

from pipeline.calibration import calibrate_plane  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.estimate.uncertainty import (  # noqa: E402
    closed_form_scaled,
    unbounded,
    window_bias,
)
from pipeline.physics import ChromatinModel  # noqa: E402
from pipeline.simulate.storm import storm_expected  # noqa: E402
from pipeline.simulate.stress import (  # noqa: E402
    STRESS_SPECS,
    TUNING_SEEDS,
    is_tuning_data,
    make_stress_case,
)


def _as_image(occupancy, calibration) -> np.ndarray:
    """Occupancy (C, Y, X) as a raw image: the calibration ``occupancy = (image - offset) *
    scale`` inverted per channel."""
    return np.stack([o / c.scale + c.offset for o, c in zip(occupancy, calibration, strict=True)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("seeds", help="comma-separated tuning seeds")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if not all(map(is_tuning_data, seeds)):
        ap.error(f"tuning data only: {TUNING_SEEDS} or a retired test seed")
    spec = next((s for s in STRESS_SPECS if s.name == args.spec), None)
    if spec is None or spec.rendering != "storm" or spec.nucleus:
        ap.error(f"{args.spec!r}: a STORM spec without a nucleus")
    model = ChromatinModel()
    print("| case | δ, s (px) | error | bias | of it: blur | of it: level | noise |"
          " two renderings | std | bias term | coverage |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        case = make_stress_case(spec, seed)
        settings = Settings(method="closed-form", calibration=case.calibration_given)
        est = unbounded(settings.estimator)
        info: dict = {}
        mean, std, ident = bench.fit(case.image, case, "closed-form", info)
        ok = bench.evaluation_region(case) & ident & np.isfinite(mean) & np.isfinite(std)
        px, d, s = case.pixel_size_um, info["delta_um"], info["window_um"]
        precision = spec.precision_nm / 1000
        clean_image = _as_image([storm_expected(o, precision_um=precision, pixel_size_um=px)
                                 for o in case.occupancy], case.calibration)
        sharp_image = _as_image(case.occupancy, case.calibration)
        again = second_rendering(spec, case, seed)
        fields = [info["fields"]] + [calibrate_plane(im, case.channel_names, settings, px)[0]
                                     for im in (clean_image, again, sharp_image)]
        data, noise_free, second, sharp = (
            closed_form_scaled(f[None], model, px, d, s, 1.0, est)[0] for f in fields)
        term = window_bias(info["fields"][None], model, px, d, s,
                           settings.uncertainty.bias_factor, est)[0]

        def rms(x: np.ndarray, ok: np.ndarray = ok) -> float:
            return float(np.sqrt(np.mean(x[ok] ** 2)))

        cover = float(np.mean(np.abs(mean - case.lam)[ok] <= 1.645 * std[ok]))
        level = float(np.mean((noise_free - case.lam)[ok]))
        print(f"| {case.name} | {d / px:.1f}, {s / px:.1f} | {rms(mean - case.lam):.3f} | "
              f"{rms(noise_free - case.lam):.3f} | {rms(noise_free - sharp):.3f} | "
              f"{level:+.3f} | {rms(data - noise_free):.3f} | "
              f"{rms((data - second) / np.sqrt(2)):.3f} | {rms(std):.3f} | {rms(term):.3f} | "
              f"{cover:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
