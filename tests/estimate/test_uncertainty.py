"""The closed form's bias terms of the std (pipeline/estimate/uncertainty.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from pipeline.estimate.uncertainty import attenuation_bias

N = 192
INTERIOR = slice(40, -40)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x[INTERIOR, INTERIOR] ** 2)))


@pytest.mark.parametrize(("window_px", "wavelength_px"), [(5.0, 40.0), (8.0, 45.0)])
def test_attenuation_bias_recovers_the_smoothing_bias_of_one_wavelength(
        window_px: float, wavelength_px: float) -> None:
    """A map smoothed by a Gaussian of the window: the term has the size of truth - map.

    The truth is a cosine; the map keeps ``a = exp(-2 pi^2 s^2 / L^2)`` of its amplitude
    (0.73 and 0.53 here), so the bias is ``(1 - a)`` of it, which the term must find from the
    map alone. A term without the division by ``a`` (the first difference only) would be
    ``a`` times too small and fail."""
    x = np.arange(N)
    truth = 1.0 + 0.5 * np.cos(2 * np.pi * x / wavelength_px)[None, :] * np.ones((N, 1))
    lam = gaussian_filter(truth, window_px, mode="wrap")
    rng = np.random.default_rng(3)
    members = np.stack([lam + 1e-4 * rng.standard_normal(lam.shape) for _ in range(4)])
    term = attenuation_bias(lam[None], members[None], window_px)[0]
    bias = _rms(truth - lam)
    assert bias > 0.05
    assert _rms(term) == pytest.approx(bias, rel=0.1)


def test_attenuation_bias_subtracts_the_members_noise() -> None:
    """A flat truth plus correlated noise has no smoothing bias: the members' noise power is
    taken out of both differences, so the term is well under what it is without it (noise
    read as bias)."""
    rng = np.random.default_rng(5)

    def noise() -> np.ndarray:
        return gaussian_filter(rng.standard_normal((N, N)), 3.0, mode="wrap")

    lam = 1.0 + noise()
    noisy = np.stack([lam + noise() for _ in range(4)])
    quiet = np.stack([lam for _ in range(4)])
    with_noise = _rms(attenuation_bias(lam[None], noisy[None], 5.0)[0])
    without = _rms(attenuation_bias(lam[None], quiet[None], 5.0)[0])
    assert with_noise < 0.5 * without


def test_attenuation_bias_is_zero_on_a_flat_map_and_keeps_undefined_pixels_finite() -> None:
    lam = np.full((1, 64, 64), 1.3)
    lam[0, :8] = np.nan  # e.g. outside a nucleus
    members = np.repeat(lam[:, None], 4, axis=1)
    term = attenuation_bias(lam, members, 4.0)
    assert np.isfinite(term).all()
    assert float(np.abs(term[0, 20:44, 20:44]).max()) < 1e-12


def test_the_closed_form_interval_covers_two_channel_storm_at_a_wide_window() -> None:
    """Two-channel STORM at 0.015 um (tuning seed 23) through the product's fit: the rule picks
    a 20 px window that flattens lambda's contrast. With the forward step alone the interval
    held 0.80 of the truth; with the attenuation bias 0.885 (docs/uncertainty.md)."""
    from benchmarks.stress import Z90, evaluation_region, fit
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "storm_smooth_2ch_px15")
    case = make_stress_case(spec, 23)
    mean, std, ident = fit(case.image, case, "closed-form")
    ok = evaluation_region(case) & ident & np.isfinite(mean) & np.isfinite(std)
    assert ok.sum() > 5000
    cover = float(np.mean(np.abs(mean - case.lam)[ok] <= Z90 * std[ok]))
    assert 0.85 <= cover <= 0.95
