"""Periodic-grid helpers shared by the simulator: wavenumbers, spectral filters, random fields.

Every field of the simulator lives on a periodic grid (the forward solver is spectral), so
all smoothing here is done by multiplication in Fourier space and is itself periodic.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

__all__ = ["wavenumbers", "gaussian_smooth", "gaussian_random_field", "as_rng", "check_shape"]


def check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Validate a 2-D grid shape and return it as a tuple of two ints."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be two sizes of at least 8 pixels, got {shape!r}")
    return shape  # type: ignore[return-value]


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return ``rng`` if it is a Generator, else ``np.random.default_rng(rng)``."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def wavenumbers(
    shape: tuple[int, int], pixel_size_um: float, *, real: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Angular wavenumbers ``(ky, kx)`` in rad/µm, broadcastable to the (r)fft2 layout.

    With ``real=True`` the x axis has ``X // 2 + 1`` entries, matching :func:`scipy.fft.rfft2`.

    Examples
    --------
    >>> ky, kx = wavenumbers((8, 8), 0.5)
    >>> ky.shape, kx.shape
    ((8, 1), (1, 5))
    """
    ny, nx = shape
    ky = 2 * np.pi * sfft.fftfreq(ny, d=pixel_size_um)
    kx = (
        2
        * np.pi
        * (sfft.rfftfreq(nx, d=pixel_size_um) if real else sfft.fftfreq(nx, d=pixel_size_um))
    )
    return ky[:, None], kx[None, :]


def gaussian_smooth(field: np.ndarray, sigma_um: float, *, pixel_size_um: float) -> np.ndarray:
    """Periodic Gaussian smoothing with standard deviation ``sigma_um`` (µm).

    Examples
    --------
    >>> f = np.zeros((16, 16)); f[0, 0] = 1.0
    >>> round(float(gaussian_smooth(f, 0.05, pixel_size_um=0.02).sum()), 6)
    1.0
    """
    if sigma_um <= 0:
        return np.array(field, dtype=float, copy=True)
    ky, kx = wavenumbers(field.shape, pixel_size_um)
    filt = np.exp(-0.5 * (ky**2 + kx**2) * sigma_um**2)
    return sfft.irfft2(sfft.rfft2(field) * filt, s=field.shape)


def gaussian_random_field(
    shape: tuple[int, int], correlation_um: float, *, pixel_size_um: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance periodic Gaussian field with covariance ``exp(-r²/(2ℓ²))``.

    ``ℓ = correlation_um``. White noise is filtered by the square root of the Gaussian
    spectrum, ``exp(-k²ℓ²/4)``, then normalised to unit sample variance.

    Examples
    --------
    >>> z = gaussian_random_field((32, 32), 0.1, pixel_size_um=0.02, rng=np.random.default_rng(0))
    >>> round(float(z.std()), 6)
    1.0
    """
    ky, kx = wavenumbers(shape, pixel_size_um)
    white = rng.standard_normal(shape)
    filt = np.exp(-0.25 * (ky**2 + kx**2) * correlation_um**2)
    z = sfft.irfft2(sfft.rfft2(white) * filt, s=shape)
    z -= z.mean()
    std = z.std()
    if std == 0:
        raise ValueError(
            f"correlation length {correlation_um} µm is too long for a grid of {shape} pixels "
            f"of {pixel_size_um} µm: the random field is constant"
        )
    return z / std
