"""The dark level of each channel, read from the image: its background outside the nuclei,
or an offset surely at or below the true one when there is none.

Part of the image calibration (:mod:`pipeline.calibration`, which re-exports these names);
``docs/calibration.md`` gives the measurements behind the rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.physics.observation import AUTO_PERCENTILES

__all__ = ["MAX_BACKGROUND_NOISE_RATIO", "assumed_offset", "background_level", "f64"]

MAX_BACKGROUND_NOISE_RATIO = 0.3
"""A background's pixel-noise variance must be below this fraction of the nucleus's."""


def background_level(planes: np.ndarray, pixel_size_um: float) -> dict[str, Any] | None:
    """Dark level of each channel from the background outside the nuclei, or None.

    The channels are normalised and summed, smoothed (Gaussian, 0.3 µm or 2 px) and split by
    Otsu's threshold. The image has a background when at least 5 % of its pixels lie below
    the threshold and the background is dark: the gap between the medians of the two classes
    is at least 10 times the background's own robust spread (smoothed). Returns ``offsets``
    (per channel, the median of the raw background pixels), ``fraction`` and ``foreground``
    (bool mask), or None.
    """
    from skimage.filters import gaussian, threshold_otsu

    data = np.asarray(planes)  # as stored: one channel at a time is held in float64 below
    norm = None
    for ch in data:
        # integers give the same percentiles as their float64 copy (computed in float64)
        lo, hi = np.percentile(ch if ch.dtype.kind in "iu" else f64(ch), [1, 99])
        x = np.array(ch, dtype=np.float64)  # a copy, normalised in place
        x -= lo
        x /= np.maximum(hi - lo, 1e-12)
        if norm is None:
            norm = x
        else:
            norm += x
        del x
    smooth = gaussian(norm, sigma=max(0.3 / pixel_size_um, 2.0), preserve_range=True)
    del norm
    thr = float(threshold_otsu(smooth))
    bg = smooth < thr
    fraction = float(bg.mean())
    if fraction < 0.05 or fraction > 0.9:
        return None
    bg_vals = smooth[bg]  # a copy, reordered and overwritten in place (medians ignore order)
    bg_med = np.median(bg_vals, overwrite_input=True)
    spread = 1.4826 * _mad(bg_vals)
    del bg_vals
    gap = float(np.median(smooth[~bg], overwrite_input=True) - bg_med)
    del smooth
    if not gap > 10 * max(spread, 1e-12):
        return None
    # a dark background is (nearly) free of photon noise: its pixel noise is well below the
    # nucleus's in every channel (a dim region of chromatin is not: its noise is of the same
    # order; measured on the step-λ cases, where Otsu splits two chromatin regions)
    bg_d, fg_d = bg[:-1, :-1], ~bg[:-1, :-1]
    for ch in data:
        x = f64(ch)
        d = x[:-1, :-1] - x[:-1, 1:]  # (x00 - x01 - x10 + x11) / 2, in place
        d -= x[1:, :-1]
        d += x[1:, 1:]
        d /= 2
        del x
        v_bg, v_fg = _mad(d[bg_d]) ** 2, _mad(d[fg_d]) ** 2
        del d
        if not v_bg < MAX_BACKGROUND_NOISE_RATIO * v_fg:
            return None
    offsets = [float(np.median(f64(ch[bg]))) for ch in data]
    return {"offsets": offsets, "fraction": fraction, "foreground": ~bg,
            "separation": gap / max(spread, 1e-12)}


def assumed_offset(plane: np.ndarray) -> float:
    """A dark level surely at or below the true one, for one channel without a dark frame or
    a background: 0 for data that is never negative (a camera's counts, a rendering's), else
    the 0.5th percentile less the distance from it to the median.

    >>> assumed_offset(np.array([[300, 420], [510, 390]], np.uint16))
    0.0
    >>> assumed_offset(np.array([-10.0, 0.0, 40.0, 50.0, 60.0]))
    -59.6
    """
    vals = f64(plane)
    if float(vals.min()) >= 0:
        return 0.0
    low, mid = np.percentile(vals, [AUTO_PERCENTILES[0], 50])
    return float(2 * low - mid)


def _mad(values: np.ndarray) -> float:
    """Median absolute deviation of ``values`` (a copy, which it overwrites)."""
    values -= np.median(values)
    np.abs(values, out=values)
    return np.median(values, overwrite_input=True)


def f64(channel: np.ndarray) -> np.ndarray:
    """One channel in float64 (a plane is converted a channel at a time, never whole)."""
    return np.asarray(channel, dtype=np.float64)
