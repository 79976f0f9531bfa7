"""The other cameras and optics of benchmarks/imaging_models.py: their PSF and calibration."""

import numpy as np
import pytest

from benchmarks.imaging_models import MODELS, airy_kernel, gaussian_kernel, render
from pipeline.simulate.stress import STRESS_SPECS


def _half_max_radius(kernel: np.ndarray) -> float:
    """Where the profile along x from the centre first falls to half its peak (linear)."""
    prof = kernel[0, : kernel.shape[1] // 2] / kernel[0, 0]
    i = int(np.argmax(prof < 0.5))
    return (i - 1) + (prof[i - 1] - 0.5) / (prof[i - 1] - prof[i])


def test_airy_has_the_gaussians_width_at_half_maximum() -> None:
    sigma = 4.0
    airy, gauss = airy_kernel((128, 128), sigma), gaussian_kernel((128, 128), sigma)
    expected = np.sqrt(2 * np.log(2)) * sigma
    assert abs(_half_max_radius(gauss) - expected) < 0.05
    assert abs(_half_max_radius(airy) - expected) < 0.05
    # an Airy pattern has rings: some of its light lies beyond the Gaussian's 3 sigma
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(128) * 128, np.fft.fftfreq(128) * 128))
    assert airy[r > 3 * sigma].sum() > 5 * gauss[r > 3 * sigma].sum()


@pytest.mark.parametrize("model", MODELS)
def test_the_calibration_passed_maps_the_image_back_to_occupancy(model: str) -> None:
    spec = next(s for s in STRESS_SPECS if s.name == "cam_lognormal_2ch")
    occ = np.stack([np.full((64, 64), 0.5), np.full((64, 64), 0.25)])
    image, cal = render(occ, spec, model, np.random.default_rng(0))
    assert image.dtype == np.uint16
    fields = [(ch.astype(float) - c.offset) * c.scale for ch, c in zip(image, cal, strict=True)]
    means = np.array([f.mean() for f in fields])
    # the camera's own calibration gives the occupancy back; haze adds 30 % of it
    expected = occ.mean(axis=(1, 2)) * (1.3 if model == "haze" else 1.0)
    assert np.allclose(means, expected, rtol=0.01), (model, means)
