"""Imaging model: fields → a noisy uint16 fluorescence image with a known calibration.

Per channel, ``I = offset + Poisson(P · blur(field)) + N(0, read_noise²)``, rounded and clipped
to uint16 (one ADU per photon). The exact calibration is therefore
``field ≈ (I - offset) · scale`` with ``scale = 1 / P``. ``P`` (photons per unit field) is set
from the requested ``noise``: the standard deviation of the calibrated field at mid intensity
``f_mid = phi_max / 2`` solves ``noise² P² = f_mid P + read_noise² + 1/12``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from pipeline.config import Calibration

from ._grid import as_rng, gaussian_smooth
from .solver import PHI_MAX

__all__ = ["CHANNEL_NAMES", "photons_for_noise", "field_noise_std", "render_image"]

log = logging.getLogger(__name__)

CHANNEL_NAMES: dict[int, tuple[str, ...]] = {
    1: ("heterochromatin",),
    2: ("chromatin", "heterochromatin"),
}
_UINT16_MAX = 65535
_NOISELESS_PEAK_ADU = 60000.0


def photons_for_noise(noise: float, *, mid: float = 0.35, read_noise: float = 2.0) -> float:
    """Photons per unit field ``P`` such that the calibrated field's std at ``mid`` is ``noise``.

    Solves ``noise² P² = mid P + read_noise² + 1/12`` (Poisson, read and rounding noise).

    Examples
    --------
    >>> P = photons_for_noise(0.02, mid=0.35, read_noise=2.0)
    >>> round(float(field_noise_std(0.35, P, read_noise=2.0)), 6)
    0.02
    """
    if noise <= 0:
        raise ValueError(f"noise must be positive here, got {noise}")
    var0 = read_noise**2 + 1 / 12
    return float((mid + np.sqrt(mid**2 + 4 * noise**2 * var0)) / (2 * noise**2))


def field_noise_std(field: float | np.ndarray, photons: float, *, read_noise: float = 2.0):
    """Expected std of the calibrated field at ``field`` (Poisson, read and rounding noise).

    >>> round(float(field_noise_std(0.0, 1000.0, read_noise=0.0)), 6)
    0.000289
    """
    return np.sqrt(np.maximum(field, 0) * photons + read_noise**2 + 1 / 12) / photons


def render_image(
    phi_h: np.ndarray,
    phi_w: np.ndarray | float,
    *,
    channels: Literal[1, 2] = 1,
    pixel_size_um: float = 0.02,
    psf_sigma_um: float = 0.015,
    noise: float = 0.02,
    photons: float | None = None,
    read_noise: float = 2.0,
    offset: float = 100.0,
    phi_max: float = PHI_MAX,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, tuple[Calibration, ...]]:
    """Render the fields as a camera image (C, Y, X) of uint16 and return its true calibration.

    Parameters
    ----------
    phi_h : ndarray (Y, X)
        Heterochromatin fraction.
    phi_w : ndarray (Y, X) or float
        Nucleoplasm fraction; the chromatin channel shows ``c = 1 - φ_w``.
    channels : {1, 2}
        1: one ``heterochromatin`` channel ∝ φ_h. 2: ``chromatin`` ∝ c, then
        ``heterochromatin`` ∝ φ_h.
    pixel_size_um : float
        Pixel size (µm), to express the PSF in pixels.
    psf_sigma_um : float
        Standard deviation of the Gaussian PSF (µm, periodic blur); 0 for none.
    noise : float
        Target std of the calibrated field at mid intensity ``phi_max / 2``. ``0`` gives a
        noiseless image (only rounding) peaking near 60,000 ADU.
    photons : float, optional
        Photons per unit field; overrides ``noise``.
    read_noise : float
        Gaussian read noise in ADU (1 ADU per photon).
    offset : float
        Camera offset in ADU.
    phi_max : float
        Sets the mid intensity at which ``noise`` is defined.
    rng : Generator, int or None
        Random source for the photon and read noise.

    Returns
    -------
    image : ndarray of uint16, shape (C, Y, X)
    calibration : tuple of :class:`pipeline.config.Calibration`
        Per channel, ``field = (image - offset) * scale``.

    Examples
    --------
    >>> ph = np.full((32, 32), 0.35)
    >>> img, cal = render_image(ph, 0.3, channels=2, noise=0.02, rng=0)
    >>> img.dtype, img.shape, len(cal)
    (dtype('uint16'), (2, 32, 32), 2)
    >>> field = (img[1] - cal[1].offset) * cal[1].scale
    >>> 0.015 < float(field.std()) < 0.025
    True
    """
    if channels not in CHANNEL_NAMES:
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")
    rng = as_rng(rng)
    phi_h = np.asarray(phi_h, dtype=float)
    c = np.broadcast_to(1.0 - np.asarray(phi_w, dtype=float), phi_h.shape)
    fields = [phi_h] if channels == 1 else [c, phi_h]
    noiseless = photons is None and noise == 0
    if photons is None:
        if noiseless:
            top = max(float(np.max(f)) for f in fields)
            photons = (_NOISELESS_PEAK_ADU - offset) / max(top, 1e-12)
        else:
            photons = photons_for_noise(noise, mid=phi_max / 2, read_noise=read_noise)
    photons = float(photons)
    planes = []
    for f in fields:
        expected = np.clip(gaussian_smooth(f, psf_sigma_um, pixel_size_um=pixel_size_um), 0, None)
        expected = expected * photons
        peak = offset + float(expected.max())
        if peak + (0 if noiseless else 5 * np.sqrt(peak) + 5 * read_noise) > _UINT16_MAX:
            raise ValueError(
                f"{photons:.4g} photons per unit field saturates uint16 (peak ≈ {peak:.0f} ADU); "
                f"ask for more noise than {noise} or fewer photons"
            )
        if noiseless:
            counts = expected
        else:
            counts = rng.poisson(expected) + rng.normal(0.0, read_noise, size=expected.shape)
        planes.append(np.clip(np.rint(offset + counts), 0, _UINT16_MAX).astype(np.uint16))
    calibration = tuple(Calibration(offset=float(offset), scale=1.0 / photons) for _ in fields)
    log.debug("render_image: %d channel(s), %.4g photons per unit field", channels, photons)
    return np.stack(planes), calibration
