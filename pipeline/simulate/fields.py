"""Ground-truth input fields: the rate ratio λ(x) and the nucleoplasm fraction φ_w(x).

All fields are periodic on the grid (the forward solver is spectral). λ is a rate ratio with
a median near 1 and values kept smoothly inside ``[lam_min, lam_max]`` (default [0.3, 3]).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import numpy as np

from ._grid import as_rng, check_shape, gaussian_random_field, gaussian_smooth
from .solver import PHI_MAX

__all__ = [
    "LambdaKind",
    "LAMBDA_KINDS",
    "lambda_field",
    "smooth_lambda",
    "lognormal_lambda",
    "step_lambda",
    "water_field",
]

log = logging.getLogger(__name__)

# correlation length of the underlying Gaussian field per unit of domain size (measured: gives
# a median equivalent domain diameter close to domain_size_um at 30 % area)
_DOMAIN_TO_CORRELATION = 0.4

LambdaKind = Literal["smooth", "lognormal", "step"]
LAMBDA_KINDS: tuple[str, ...] = get_args(LambdaKind)


def _squash_log(
    z: np.ndarray, contrast: float, *, median: float, lam_min: float, lam_max: float
) -> np.ndarray:
    """λ = median · exp(h · tanh(contrast · z / h)): log-normal-like, smoothly bounded."""
    if not 0 < lam_min < median < lam_max:
        raise ValueError(
            f"need 0 < lam_min < median < lam_max, got lam_min={lam_min}, median={median}, "
            f"lam_max={lam_max}"
        )
    h = min(np.log(lam_max / median), np.log(median / lam_min))
    return median * np.exp(h * np.tanh(contrast * z / h))


def _coordinates(shape: tuple[int, int], pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(shape[0])[:, None] * pixel_size_um
    x = np.arange(shape[1])[None, :] * pixel_size_um
    return y, x


def smooth_lambda(
    shape: tuple[int, int],
    *,
    pixel_size_um: float = 0.02,
    rng: np.random.Generator | int | None = None,
    wavelength_um: tuple[float, float] = (1.6, 2.6),
    n_modes: int = 4,
    contrast: float = 0.5,
    median: float = 1.0,
    lam_min: float = 0.3,
    lam_max: float = 3.0,
) -> np.ndarray:
    """λ from a few periodic sinusoids with wavelengths in ``wavelength_um`` (µm).

    The wave vectors are grid harmonics (so the field is periodic); when none falls inside
    the wavelength range, the harmonics closest to it (in log wavelength) are used. The summed
    sinusoids are normalised to unit standard deviation ``z`` and mapped to
    ``λ = median · exp(h tanh(contrast z / h))``, which stays inside ``[lam_min, lam_max]``.

    Examples
    --------
    >>> lam = smooth_lambda((64, 64), pixel_size_um=0.02, rng=0)
    >>> bool(0.3 <= lam.min() and lam.max() <= 3.0)
    True
    """
    shape = check_shape(shape)
    rng = as_rng(rng)
    ly, lx = shape[0] * pixel_size_um, shape[1] * pixel_size_um
    lo, hi = wavelength_um
    nmax_y = int(np.ceil(ly / lo)) + 1
    nmax_x = int(np.ceil(lx / lo)) + 1
    cand = [
        (my, mx)
        for my in range(-nmax_y, nmax_y + 1)
        for mx in range(0, nmax_x + 1)
        if (mx > 0 or my > 0)
    ]
    wl = np.array([1.0 / np.hypot(my / ly, mx / lx) for my, mx in cand])
    inside = np.flatnonzero((wl >= lo) & (wl <= hi))
    if inside.size < n_modes:
        dist = np.maximum(np.log(lo / wl), np.log(wl / hi)).clip(min=0)
        inside = np.argsort(dist, kind="stable")[: max(n_modes, inside.size)]
        log.debug("smooth_lambda: few grid harmonics in %s µm; using the nearest", wavelength_um)
    pick = rng.choice(inside, size=min(n_modes, inside.size), replace=False)
    y, x = _coordinates(shape, pixel_size_um)
    z = np.zeros(shape)
    for i in pick:
        my, mx = cand[i]
        amp = rng.uniform(0.5, 1.0)
        phase = rng.uniform(0, 2 * np.pi)
        z += amp * np.cos(2 * np.pi * (my * y / ly + mx * x / lx) + phase)
    z = (z - z.mean()) / z.std()
    return _squash_log(z, contrast, median=median, lam_min=lam_min, lam_max=lam_max)


def lognormal_lambda(
    shape: tuple[int, int],
    *,
    pixel_size_um: float = 0.02,
    rng: np.random.Generator | int | None = None,
    correlation_um: float = 0.8,
    contrast: float = 0.5,
    median: float = 1.0,
    lam_min: float = 0.3,
    lam_max: float = 3.0,
) -> np.ndarray:
    """Correlated log-normal λ: ``log λ`` is a Gaussian field with correlation ``correlation_um``.

    The Gaussian field has covariance ``exp(-r²/(2ℓ²))``; its standard deviation in log λ is
    ``contrast``, softly bounded so that λ stays inside ``[lam_min, lam_max]``.

    Examples
    --------
    >>> lam = lognormal_lambda((64, 64), rng=1)
    >>> 0.5 < float(np.median(lam)) < 2.0
    True
    """
    shape = check_shape(shape)
    z = gaussian_random_field(shape, correlation_um, pixel_size_um=pixel_size_um, rng=as_rng(rng))
    return _squash_log(z, contrast, median=median, lam_min=lam_min, lam_max=lam_max)


def step_lambda(
    shape: tuple[int, int],
    *,
    pixel_size_um: float = 0.02,
    rng: np.random.Generator | int | None = None,
    values: tuple[float, float] = (2.0, 0.5),
    radius_fraction: float = 0.3,
    edge_um: float = 0.1,
    wobble: float = 0.1,
) -> np.ndarray:
    """Two regions: λ = ``values[0]`` inside a wobbly disc and ``values[1]`` outside.

    The boundary is ``r(θ) = r0 (1 + wobble cos(3θ + θ0))`` with ``r0 = radius_fraction ×``
    the shorter side, centred at a random point (periodic minimum-image distances, so the
    field is periodic). The step is smoothed as ``½(1 + tanh(d / edge_um))`` in log λ, where
    ``d`` is the signed distance along the radius.

    Examples
    --------
    >>> lam = step_lambda((64, 64), rng=0)
    >>> sorted(np.round([lam.min(), lam.max()], 2).tolist())
    [0.5, 2.0]
    """
    shape = check_shape(shape)
    rng = as_rng(rng)
    if not 0 < radius_fraction * (1 + abs(wobble)) < 0.5:
        raise ValueError(
            f"radius_fraction={radius_fraction} with wobble={wobble} does not fit in the grid "
            "(need radius_fraction * (1 + wobble) < 0.5)"
        )
    if min(values) <= 0:
        raise ValueError(f"step values must be positive rate ratios, got {values!r}")
    ly, lx = shape[0] * pixel_size_um, shape[1] * pixel_size_um
    cy, cx = rng.uniform(0, ly), rng.uniform(0, lx)
    theta0 = rng.uniform(0, 2 * np.pi)
    y, x = _coordinates(shape, pixel_size_um)
    dy = (y - cy + ly / 2) % ly - ly / 2
    dx = (x - cx + lx / 2) % lx - lx / 2
    r = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    r0 = radius_fraction * min(ly, lx) * (1 + wobble * np.cos(3 * theta + theta0))
    inside = 0.5 * (1 + np.tanh((r0 - r) / edge_um))
    log_in, log_out = np.log(values[0]), np.log(values[1])
    return np.exp(log_out + (log_in - log_out) * inside)


_LAMBDA_FUNCS = {"smooth": smooth_lambda, "lognormal": lognormal_lambda, "step": step_lambda}


def lambda_field(
    kind: LambdaKind,
    shape: tuple[int, int],
    *,
    pixel_size_um: float = 0.02,
    rng: np.random.Generator | int | None = None,
    **options: Any,
) -> np.ndarray:
    """A periodic ground-truth rate-ratio map λ(x) of the given ``kind``.

    Parameters
    ----------
    kind : {"smooth", "lognormal", "step"}
        Sum of sinusoids (:func:`smooth_lambda`), correlated log-normal
        (:func:`lognormal_lambda`) or two regions with a smoothed boundary (:func:`step_lambda`).
    shape : (int, int)
        Grid size (Y, X) in pixels.
    pixel_size_um : float
        Pixel size in µm.
    rng : Generator, int or None
        Random source (or seed).
    **options
        Passed to the kind's function (e.g. ``wavelength_um``, ``correlation_um``, ``values``).

    Returns
    -------
    ndarray of float64, shape ``shape``

    Examples
    --------
    >>> lambda_field("lognormal", (64, 64), pixel_size_um=0.02, rng=0).shape
    (64, 64)
    """
    try:
        func = _LAMBDA_FUNCS[kind]
    except KeyError:
        raise ValueError(f"unknown lambda kind {kind!r}; use one of {LAMBDA_KINDS}") from None
    return func(shape, pixel_size_um=pixel_size_um, rng=rng, **options)


def water_field(
    shape: tuple[int, int],
    *,
    pixel_size_um: float = 0.02,
    rng: np.random.Generator | int | None = None,
    domain_size_um: float = 0.1,
    area_fraction: float = 0.3,
    smooth_um: float = 0.04,
    phi_max: float = PHI_MAX,
    phi_inside: float = 0.8,
) -> np.ndarray:
    """Nucleoplasm fraction φ_w: chromatin-poor domains in a uniform background.

    A periodic Gaussian random field (correlation length ``0.4 domain_size_um``, which gives
    domains about ``domain_size_um`` across) is thresholded, smoothed with a Gaussian of
    ``smooth_um`` (the threshold is chosen so that the smoothed indicator exceeds ½ on
    ``area_fraction`` of the grid), and mapped to
    ``φ_w = 1 - phi_max`` outside the domains and ``phi_inside`` deep inside. The chromatin
    fraction ``c = 1 - φ_w`` then lies in ``[1 - phi_inside, phi_max]``.

    ``smooth_um`` should span at least 2 pixels: the steady state's chemical-potential terms
    are ~100× larger than the reaction term and cancel, so an under-resolved φ_w makes the
    grid solution disagree with continuum derivatives by more than the reaction itself
    (measured at 1 pixel: max error 5 against a reaction term of 0.8; at 2 pixels: 2e-3).

    Examples
    --------
    >>> pw = water_field((64, 64), rng=0)
    >>> round(float(pw.min()), 3) >= 0.3, round(float(pw.max()), 3) <= 0.8
    (True, True)
    """
    shape = check_shape(shape)
    if not 0 < area_fraction < 1:
        raise ValueError(f"area_fraction must be in (0, 1), got {area_fraction}")
    phi_out = 1.0 - phi_max
    if not phi_out < phi_inside < 1:
        raise ValueError(f"phi_inside must be in ({phi_out}, 1), got {phi_inside}")
    if smooth_um < 1.5 * pixel_size_um:
        log.warning(
            "water_field: smooth_um=%s µm is under 1.5 pixels of %s µm; the steady state will "
            "not be resolved well enough for continuum derivatives to reproduce it",
            smooth_um,
            pixel_size_um,
        )
    z = gaussian_random_field(
        shape, domain_size_um * _DOMAIN_TO_CORRELATION, pixel_size_um=pixel_size_um, rng=as_rng(rng)
    )

    def soften(q: float) -> np.ndarray:
        mask = (z > np.quantile(z, q)).astype(float)
        return np.clip(gaussian_smooth(mask, smooth_um, pixel_size_um=pixel_size_um), 0.0, 1.0)

    # smoothing shrinks small domains: bisect the threshold so that soft > 1/2 on area_fraction
    lo, hi = 0.0, 1.0 - 0.5 / z.size
    for _ in range(30):
        q = 0.5 * (lo + hi)
        if (soften(q) > 0.5).mean() > area_fraction:
            lo = q
        else:
            hi = q
    return phi_out + (phi_inside - phi_out) * soften(0.5 * (lo + hi))
