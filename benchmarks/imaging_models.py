"""Cameras and optics the stress suite does not model: what they do to λ and its std.

The stress suite's camera is ideal in four ways (docs/stress.md, "Limits"): a Gaussian PSF,
one gain of 1 ADU per photon, the same read noise and offset in every pixel, and no light but
the in-focus chromatin's. Each camera case is drawn once (its λ, fields and nucleus), and its
occupancy is rendered again here, with a noise stream of its own, by:

- ``ideal``: the suite's model (Gaussian PSF, Poisson photons plus Gaussian read noise, 1 ADU
  per photon), rendered by this script's own code: the control;
- ``airy``: an Airy PSF (``[2 J1(v) / v]^2``) of the same width at half maximum as the
  suite's Gaussian;
- ``scmos``: 0.5 ADU per electron, read noise per pixel from a lognormal (median 1.6 e-, a
  log-sd of 0.6: one pixel in a hundred above 6.5 e-), offset per pixel 100 ± 3 ADU; the
  calibration a user passes is the mean offset and the gain;
- ``emccd``: electron multiplication of gain 20 (``Gamma(n, 20)`` for ``n`` photoelectrons:
  the variance doubled, an excess noise factor of sqrt 2), 30 ADU of read noise after it;
- ``haze``: light from outside the focal plane, the occupancy blurred by a Gaussian of 1 µm,
  at 30 % of the in-focus level, added before the photon noise. A user cannot know it; the
  calibration passed is the camera's.

Each image is fitted as the product fits it (:func:`benchmarks.stress.fit`, the closed form)
with the calibration a user would pass (the camera's offset and gain), and scored as the
stress suite scores; ``haze`` also with ``--calibration-check fix`` and with
``--calibration image`` (no pairs), the remedies a user has.

Results: docs/stress.md ("Cameras and optics the suite does not model").

    python benchmarks/imaging_models.py --seeds tuning --out docs/stress_runs/imaging_models_tuning.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.special import j1

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
from pipeline.config import Calibration  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, StressSpec, make_stress_case  # noqa: E402

MODELS = ("ideal", "airy", "scmos", "emccd", "haze")
OFFSET = 100.0
SCMOS_GAIN, SCMOS_READ_MEDIAN, SCMOS_READ_LOG_SD, SCMOS_OFFSET_SD = 0.5, 1.6, 0.6, 3.0
EM_GAIN, EM_READ = 20.0, 30.0
HAZE_SIGMA_UM, HAZE_LEVEL = 1.0, 0.3
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_AIRY_HALF_MAX_V = 1.616340  # 2 J1(v) / v squared is 1/2 here


def _periodic_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x`` (Y, X) convolved with ``kernel`` (same shape, centred on pixel (0, 0)), periodic."""
    return np.real(np.fft.ifft2(np.fft.fft2(x) * np.fft.fft2(kernel)))


def _radius(shape: tuple[int, int]) -> np.ndarray:
    """Distance in pixels from pixel (0, 0) on the periodic grid."""
    y = np.fft.fftfreq(shape[0]) * shape[0]
    x = np.fft.fftfreq(shape[1]) * shape[1]
    return np.hypot(y[:, None], x[None, :])


def gaussian_kernel(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """A unit-sum Gaussian of ``sigma_px`` centred on pixel (0, 0)."""
    k = np.exp(-0.5 * (_radius(shape) / sigma_px) ** 2)
    return k / k.sum()


def airy_kernel(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """A unit-sum Airy pattern whose width at half maximum is a Gaussian's of ``sigma_px``.

    >>> k = airy_kernel((64, 64), 2.0)
    >>> round(float(k.sum()), 9), bool(k[0, 0] == k.max())
    (1.0, True)
    """
    half = _FWHM_PER_SIGMA * sigma_px / 2.0
    v = _AIRY_HALF_MAX_V * _radius(shape) / half
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(v > 0, (2.0 * j1(v) / v) ** 2, 1.0)
    return k / k.sum()


def render(occupancy: np.ndarray, spec: StressSpec, model: str, rng: np.random.Generator
           ) -> tuple[np.ndarray, tuple[Calibration, ...]]:
    """``occupancy`` (C, Y, X) as a uint16 image under ``model``, and the calibration a user
    of that camera would pass (offset and scale of every channel)."""
    shape = occupancy.shape[-2:]
    sigma = spec.psf_sigma_px
    if sigma > 0:
        kernel = (airy_kernel if model == "airy" else gaussian_kernel)(shape, sigma)
        blurred = np.stack([_periodic_convolve(o, kernel) for o in occupancy])
    else:
        blurred = occupancy.astype(np.float64)
    light = np.clip(blurred, 0.0, None) + spec.background
    if model == "haze":
        far = gaussian_kernel(shape, HAZE_SIGMA_UM / spec.pixel_size_um)
        light = light + HAZE_LEVEL * np.stack([_periodic_convolve(o, far) for o in occupancy])
    photons = rng.poisson(spec.photons * np.clip(light, 0.0, None)).astype(np.float64)
    if model == "scmos":
        read = SCMOS_READ_MEDIAN * np.exp(SCMOS_READ_LOG_SD * rng.standard_normal(shape))
        offset = OFFSET + SCMOS_OFFSET_SD * rng.standard_normal(shape)
        adu = offset + SCMOS_GAIN * (photons + read * rng.standard_normal(photons.shape))
        per_photon = SCMOS_GAIN
    elif model == "emccd":
        amplified = np.where(photons > 0, rng.gamma(np.maximum(photons, 1.0), EM_GAIN), 0.0)
        adu = OFFSET + amplified + EM_READ * rng.standard_normal(photons.shape)
        per_photon = EM_GAIN
    else:
        adu = OFFSET + photons + spec.read_noise * rng.standard_normal(photons.shape)
        per_photon = 1.0
    if adu.max() >= np.iinfo(np.uint16).max:
        raise ValueError(f"{model}: the image saturates uint16 (max {adu.max():.0f} ADU)")
    image = np.clip(np.rint(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    scale = 1.0 / (spec.photons * per_photon)
    cal = Calibration(offset=OFFSET + per_photon * spec.photons * spec.background, scale=scale)
    return image, tuple(cal for _ in occupancy)


CALIBRATIONS = {"pairs": {}, "pairs, check fix": {"calibration_check": "fix"},
                "image": {"calibration": "image"}}
"""How each image is calibrated (the options of :func:`benchmarks.stress.fit`): the camera's
pairs (the check warns, the default), the pairs with ``--calibration-check fix``, and
``--calibration image`` (no pairs)."""


def run(specs: tuple[str, ...], seeds: tuple[int, ...], models: tuple[str, ...],
        remedied: tuple[str, ...] = ("haze",)) -> list[dict]:
    """Rows per case and model; the ``remedied`` models under every :data:`CALIBRATIONS`,
    the others with the pairs only."""
    by_name = {s.name: s for s in STRESS_SPECS}
    rows = []
    for name in specs:
        spec = by_name[name]
        for seed in seeds:
            case = make_stress_case(spec, seed)
            region = evaluation_region(case)
            for model in models:
                rng = np.random.default_rng([seed, MODELS.index(model), 7])
                image, cal = render(case.occupancy, spec, model, rng)
                given = dataclasses.replace(case, calibration=cal, calibration_given=cal)
                for mode in CALIBRATIONS if model in remedied else ("pairs",):
                    row = {"spec": name, "seed": seed, "model": model, "calibration": mode}
                    info: dict = {}
                    row |= fit_scored(image, given, region, info, **CALIBRATIONS[mode])
                    row["calibration_contradicted"] = info["calibration_contradicted"]
                    rows.append(row)
                    print(f"{name} s{seed} {model:6s} ({mode}): r {row['r']:.3f} rmse "
                          f"{row['rmse']:.3f} coverage {row['coverage']:.2f} std/rmse "
                          f"{row['std_rmse']:.2f} delta, s {row['delta_px']:.1f}, "
                          f"{row['window_px']:.1f} px"
                          + (" contradicted" if row["calibration_contradicted"] else ""),
                          flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(ap, CAMERA_SPECS)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)
    rows = run(tuple(args.specs.split(",")), seeds, tuple(args.models.split(",")))
    write_rows(args.out, seeds, rows, models=args.models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
