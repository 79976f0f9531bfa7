"""The dark level of each channel, read from the image: its background outside the nuclei,
or an offset surely at or below the true one when there is none.

Part of the image calibration (:mod:`pipeline.calibration`, which re-exports these names);
``docs/calibration.md`` gives the measurements behind the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.physics.observation import AUTO_PERCENTILES

__all__ = ["MAX_BACKGROUND_NOISE_RATIO", "OFFSET_TOLERANCE", "assumed_offset",
           "background_level", "f64", "offset_check"]

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


OFFSET_TOLERANCE = 0.1
"""Largest distance between a given offset and the image's dark background, as a fraction of
the nuclei's signal above the given offset, that :func:`offset_check` accepts. On the stress
suite's nucleus designs under their true calibration the distance was at most 0.033 (tuning
seeds; docs/calibration.md, "Checking the offsets you pass")."""


def offset_check(planes: np.ndarray, offsets: Sequence[float], pixel_size_um: float
                 ) -> dict[str, Any]:
    """Whether the image's dark background contradicts the offsets a user passed.

    Outside the nuclei there is no chromatin, so the background's level is each channel's
    dark level. Where :func:`background_level` finds such a background, each channel's
    background median is compared with the given offset, relative to the nuclei's median
    above that offset; a distance of :data:`OFFSET_TOLERANCE` or more in any channel (or
    nuclei no brighter than the offset) **contradicts** the offsets: λ then carries an offset
    error that neither the std nor the two-channel check sees. Nothing is changed.

    Returns a JSON-able dict: ``checked`` (a background was found), ``contradicted``,
    ``channels`` (per channel ``given``, ``background``, ``nuclei_median`` and ``relative``,
    the distance over the nuclei's signal, None when the nuclei are no brighter than the
    offset) and ``statement``.

    >>> img = np.full((1, 64, 64), 100.0); img[0, 16:48, 16:48] = 400.0
    >>> img += np.random.default_rng(0).normal(0, 1, img.shape) * (img > 200) * 10
    >>> offset_check(img, [100.0], 0.05)["contradicted"]
    False
    >>> offset_check(img, [0.0], 0.05)["contradicted"]
    True
    """
    bg = background_level(planes, pixel_size_um)
    if bg is None:
        return {"checked": False, "contradicted": False, "channels": [],
                "statement": "offsets not checked: no dark background around nuclei"}
    chans = []
    for c, ch in enumerate(planes):
        nuclei = float(np.median(ch[bg["foreground"]], overwrite_input=True))  # a copy
        given, level = float(offsets[c]), float(bg["offsets"][c])
        signal = nuclei - given
        rel = (level - given) / signal if signal > 0 else None  # None: nuclei not brighter
        chans.append({"given": given, "background": level, "nuclei_median": nuclei,
                      "relative": rel})
    bad = [c for c, ch in enumerate(chans)
           if ch["relative"] is None or not abs(ch["relative"]) < OFFSET_TOLERANCE]
    if bad:
        parts = [f"channel {c}: background {chans[c]['background']:.1f} against the offset "
                 f"{chans[c]['given']:.1f} given ("
                 + (f"{chans[c]['relative']:+.0%} of the nuclei's signal"
                    if chans[c]["relative"] is not None else "the nuclei are no brighter")
                 + ")" for c in bad]
        statement = ("the image's dark background contradicts the offsets given ("
                     + "; ".join(parts) + "): λ carries an offset error the std does not "
                     "include; pass the background's level as the offset, or --calibration "
                     "image")
    else:
        worst = max(abs(ch["relative"]) for ch in chans)
        statement = (f"offsets consistent with the image's dark background (within "
                     f"{worst:.0%} of the nuclei's signal; a contradiction needs "
                     f"{OFFSET_TOLERANCE:.0%})")
    return {"checked": True, "contradicted": bool(bad), "channels": chans,
            "statement": statement}


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
