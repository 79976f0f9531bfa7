"""STORM/PALM-like rendering: localisations drawn from the density, jittered, histogrammed and
Gaussian-rendered.

A single-molecule localisation image is not a camera image of the density. Per channel:

1. the number of localisations in each pixel is Poisson with mean
   ``locs_per_px * (field + background)`` (``field`` is the occupancy, 1 = full, so
   ``locs_per_px`` is the count per pixel at full occupancy); with ``locs_per_molecule`` ``k >
   1`` (a fluorophore that blinks), molecules are Poisson with mean ``1/k`` of that and each
   gives ``1 + Poisson(k - 1)`` localisations, so the mean is unchanged and the counts are
   over-dispersed and clustered;
2. each molecule sits uniformly inside its pixel; each of its localisations is displaced from
   it by the localisation error, a Gaussian of standard deviation ``precision_um`` per axis;
3. the positions are histogrammed on the pixel grid (periodic wrap, like every field of the
   simulator);
4. the histogram is rendered with a Gaussian of width ``precision_um`` (as rendering software
   does), scaled by ``gain_adu`` per localisation and stored as uint16 over ``offset``.

The noise of step 1 is pixel-independent, but step 4 spreads each localisation over
neighbouring pixels: the image noise is **spatially correlated** over about the precision.

The true calibration is ``field = (I - offset_true) * scale`` with
``offset_true = offset + gain_adu * locs_per_px * background`` and
``scale = 1 / (gain_adu * locs_per_px)``.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.config import Calibration

from ._grid import as_rng, gaussian_smooth

__all__ = ["render_storm", "storm_expected"]

log = logging.getLogger(__name__)

_UINT16_MAX = 65535


def storm_expected(field: np.ndarray, *, precision_um: float, pixel_size_um: float) -> np.ndarray:
    """The noiseless rendering of ``field`` (occupancy units): the density blurred by the
    localisation error and the rendering Gaussian, i.e. a Gaussian of ``sqrt(2) * precision``
    (the uniform position inside a pixel adds a box; it is left out, being below a pixel).

    >>> f = np.full((16, 16), 0.4)
    >>> float(np.round(storm_expected(f, precision_um=0.02, pixel_size_um=0.02).mean(), 12))
    0.4
    """
    return gaussian_smooth(
        np.asarray(field, float), np.sqrt(2.0) * precision_um, pixel_size_um=pixel_size_um
    )


def render_storm(
    fields: np.ndarray,
    *,
    pixel_size_um: float,
    locs_per_px: float,
    precision_um: float,
    background: float = 0.0,
    locs_per_molecule: float = 1.0,
    gain_adu: float = 100.0,
    offset: float = 100.0,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, tuple[Calibration, ...]]:
    """Render occupancy ``fields`` (C, Y, X) as a localisation-microscopy image.

    Parameters
    ----------
    fields : ndarray (C, Y, X)
        Occupancy per channel, in [0, 1] (1 = full occupancy).
    pixel_size_um : float
        Pixel size of the rendered grid (µm).
    locs_per_px : float
        Mean number of localisations in one pixel at full occupancy.
    precision_um : float
        Localisation precision (std per axis, µm); also the rendering Gaussian's width.
    background : float
        Spurious localisations everywhere, as a fraction of full occupancy.
    locs_per_molecule : float
        Mean localisations of one molecule (>= 1; 1: every localisation independent).
    gain_adu, offset : float
        ADU per localisation (after rendering) and the constant added to every pixel.
    rng : Generator, int or None
        Random source.

    Returns
    -------
    image : ndarray of uint16, shape (C, Y, X)
    calibration : tuple of :class:`pipeline.config.Calibration`
        The true per-channel calibration.

    Examples
    --------
    >>> img, cal = render_storm(np.full((1, 32, 32), 0.5), pixel_size_um=0.02,
    ...                         locs_per_px=20, precision_um=0.015, rng=0)
    >>> img.dtype, img.shape
    (dtype('uint16'), (1, 32, 32))
    >>> field = (img[0] - cal[0].offset) * cal[0].scale
    >>> bool(abs(field.mean() - 0.5) < 0.02)
    True
    """
    fields = np.asarray(fields, dtype=float)
    if fields.ndim != 3:
        raise ValueError(f"fields must be (C, Y, X), got shape {fields.shape}")
    if not locs_per_px > 0 or not precision_um > 0 or not gain_adu > 0:
        raise ValueError(
            f"locs_per_px ({locs_per_px}), precision_um ({precision_um}) and gain_adu "
            f"({gain_adu}) must be positive"
        )
    if background < 0 or locs_per_molecule < 1:
        raise ValueError(f"need background >= 0 and locs_per_molecule >= 1, got {background} "
                         f"and {locs_per_molecule}")
    rng = as_rng(rng)
    ny, nx = fields.shape[1:]
    sigma_px = precision_um / pixel_size_um
    planes = []
    for field in fields:
        mean_counts = locs_per_px * (np.clip(field, 0.0, None) + background)
        molecules = rng.poisson(mean_counts / locs_per_molecule).ravel()
        pix = np.repeat(np.arange(ny * nx), molecules)
        my, mx = pix // nx + rng.random(pix.size), pix % nx + rng.random(pix.size)
        if locs_per_molecule > 1:
            repeats = 1 + rng.poisson(locs_per_molecule - 1.0, pix.size)
            my, mx = np.repeat(my, repeats), np.repeat(mx, repeats)
        n = my.size
        y = my + rng.normal(0.0, sigma_px, n)
        x = mx + rng.normal(0.0, sigma_px, n)
        iy = np.floor(y).astype(np.int64) % ny
        ix = np.floor(x).astype(np.int64) % nx
        hist = np.bincount(iy * nx + ix, minlength=ny * nx).reshape(ny, nx).astype(float)
        rendered = gaussian_smooth(hist, precision_um, pixel_size_um=pixel_size_um)
        adu = offset + gain_adu * np.clip(rendered, 0.0, None)
        if adu.max() > _UINT16_MAX:
            raise ValueError(
                f"the rendering saturates uint16 (peak {adu.max():.0f} ADU); lower gain_adu "
                f"({gain_adu}) or locs_per_px ({locs_per_px})"
            )
        planes.append(np.rint(adu).astype(np.uint16))
        log.debug("render_storm: %d localisations, precision %.1f px", n, sigma_px)
    scale = 1.0 / (gain_adu * locs_per_px)
    true_offset = float(offset + gain_adu * locs_per_px * background)
    calibration = tuple(Calibration(offset=true_offset, scale=scale) for _ in fields)
    return np.stack(planes), calibration
