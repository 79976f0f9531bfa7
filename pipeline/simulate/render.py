"""Camera rendering with a background, and a whole nucleus in a dark field.

:func:`render_camera` is the camera model of :mod:`pipeline.simulate.imaging` with a PSF given
in pixels, a photon level given directly and a uniform background; :func:`nucleus_envelope`
is the soft elliptical nucleus that the stress suite multiplies its fields by, so that outside
the nucleus only background and noise remain.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import Calibration

from ._grid import as_rng, gaussian_smooth

__all__ = ["render_camera", "nucleus_envelope"]

_UINT16_MAX = 65535


def render_camera(
    fields: np.ndarray,
    *,
    pixel_size_um: float,
    psf_sigma_px: float,
    photons: float,
    read_noise: float,
    background: float = 0.0,
    offset: float = 100.0,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, tuple[Calibration, ...], np.ndarray]:
    """``I = offset + Poisson(P (blur(field) + background)) + N(0, read²)`` per channel.

    Parameters
    ----------
    fields : ndarray (C, Y, X)
        Occupancy per channel.
    pixel_size_um : float
        Pixel size (µm).
    psf_sigma_px : float
        Gaussian PSF standard deviation in pixels (periodic blur); 0 for none.
    photons : float
        Photons (= ADU) per pixel at full occupancy ``P``.
    read_noise : float
        Gaussian read noise (ADU).
    background : float
        Uniform background, as a fraction of full occupancy.
    offset : float
        Camera offset (ADU).
    rng : Generator, int or None
        Random source.

    Returns
    -------
    image : ndarray of uint16 (C, Y, X)
    calibration : tuple of Calibration
        The true calibration: offset ``offset + P * background``, scale ``1 / P``.
    expected : ndarray (C, Y, X)
        The noiseless blurred fields (occupancy units, background excluded).

    Examples
    --------
    >>> img, cal, clean = render_camera(np.full((1, 16, 16), 0.35), pixel_size_um=0.02,
    ...                                 psf_sigma_px=1.0, photons=900, read_noise=2, rng=0)
    >>> img.dtype, round(cal[0].scale * 900, 12)
    (dtype('uint16'), 1.0)
    """
    fields = np.asarray(fields, dtype=float)
    if fields.ndim != 3:
        raise ValueError(f"fields must be (C, Y, X), got shape {fields.shape}")
    if not photons > 0 or read_noise < 0 or psf_sigma_px < 0 or background < 0:
        raise ValueError(
            f"need photons > 0, read_noise >= 0, psf_sigma_px >= 0 and background >= 0; got "
            f"{photons}, {read_noise}, {psf_sigma_px}, {background}"
        )
    rng = as_rng(rng)
    expected = np.stack(
        [
            np.clip(gaussian_smooth(f, psf_sigma_px * pixel_size_um, pixel_size_um=pixel_size_um),
                    0.0, None)
            for f in fields
        ]
    )
    mean_counts = photons * (expected + background)
    peak = offset + float(mean_counts.max())
    if peak + 5 * np.sqrt(peak) + 5 * read_noise > _UINT16_MAX:
        raise ValueError(f"{photons:g} photons at full occupancy saturate uint16 (peak ≈ {peak:.0f})")
    counts = rng.poisson(mean_counts) + rng.normal(0.0, read_noise, size=mean_counts.shape)
    image = np.clip(np.rint(offset + counts), 0, _UINT16_MAX).astype(np.uint16)
    cal = Calibration(offset=float(offset + photons * background), scale=1.0 / photons)
    return image, tuple(cal for _ in fields), expected


def nucleus_envelope(
    shape: tuple[int, int],
    *,
    pixel_size_um: float,
    rng: np.random.Generator | int | None = None,
    edge_um: float = 0.15,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """A soft elliptical nucleus: ``(envelope, inside, geometry)``.

    The ellipse is centred within 4 % of the image centre, its semi-major axis is 30-36 % of
    the shorter side, its aspect ratio 0.7-0.9 and its orientation uniform. With ``ρ`` the
    elliptical radius (1 on the boundary) and ``r = sqrt(a b)``, the envelope is
    ``½ (1 - tanh((ρ - 1) r / edge_um))``: 1 inside, a soft edge about ``edge_um`` wide, 0
    outside. ``inside`` is ``ρ < 1``.

    Examples
    --------
    >>> env, inside, geo = nucleus_envelope((64, 64), pixel_size_um=0.1, rng=0)
    >>> bool(env[32, 32] > 0.99 and env[0, 0] < 0.01), bool(inside[32, 32])
    (True, True)
    """
    rng = as_rng(rng)
    ny, nx = shape
    side = min(ny, nx) * pixel_size_um
    a = side * rng.uniform(0.30, 0.36)
    b = a * rng.uniform(0.7, 0.9)
    theta = rng.uniform(0.0, np.pi)
    cy = ny * pixel_size_um / 2 + side * rng.uniform(-0.04, 0.04)
    cx = nx * pixel_size_um / 2 + side * rng.uniform(-0.04, 0.04)
    y = (np.arange(ny)[:, None] + 0.5) * pixel_size_um - cy
    x = (np.arange(nx)[None, :] + 0.5) * pixel_size_um - cx
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    envelope = 0.5 * (1.0 - np.tanh((rho - 1.0) * np.sqrt(a * b) / edge_um))
    geometry = {"centre_y_um": float(cy), "centre_x_um": float(cx), "semi_major_um": float(a),
                "semi_minor_um": float(b), "angle_rad": float(theta), "edge_um": float(edge_um)}
    return envelope, rho < 1.0, geometry
