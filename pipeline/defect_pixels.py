"""Defect pixels: single hot or dead pixels of a camera, replaced before calibration.

CMOS and sCMOS cameras have hot pixels (a high dark current: bright in every frame, typically
0.01–0.1 % of the sensor) and a few dead or stuck ones. λ is read from derivatives of the
fields up to the fourth order, and a single-pixel spike is the structure they amplify most: a
few hot pixels in a 256 x 256 field take r from 0.99 to about 0.5 (docs/your-own-images.md,
"Hot and dead pixels").

**Test.** A pixel is a defect when it stands out from the median of its 8 neighbours by more
than :data:`THRESHOLD` times the noise of pixels at that intensity. The noise scale is measured
on pixel-minus-neighbour-median in :data:`N_BINS` bins of the neighbour median (so Poisson
noise's growth with intensity is followed), as the deviations' 99th percentile over a
Gaussian's (rare defects do not move it; a sparse rendering's frequent spikes do), and is at
least :data:`FLOOR` of the brightest bin's scale (a quiet dark background does not make faint
spikes count) and one grey level. A camera's light is blurred by its optics over more than a
pixel, so no real structure makes a lone pixel stand out this far.

**Constants** were chosen on the stress suite's tuning seeds (docs/your-own-images.md): no
pixel of any of its 23 designs, nor of sparser STORM renderings (2 localisations per pixel,
10 nm precision on 30 nm pixels, in a dark background), passes the test (largest 9.3 noise
scales), while a hot pixel that changes λ (+500 ADU on a camera's 20 ADU noise) stands 25
out.

**Rare spikes only.** A sensor's defects are rare. When more than :data:`MAX_FRACTION` of a
channel's pixels pass the test, the spikes are the image's own content (a sparse rendering of
single-molecule localisations, where one localisation can be one pixel), and nothing is
replaced in that channel; the record says so.

**Replacement.** A defect pixel takes the median of its 8 neighbours, in its own channel.
Every other pixel is left exactly as it was, so the noise the bandwidth choice and the std
measure is the camera's (a smoothing filter would change it: see "Smoothed or denoised
images" in docs/your-own-images.md).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> plane = rng.poisson(400, (1, 64, 64)).astype(np.uint16)
>>> plane[0, 10, 20] = 3000
>>> fixed, rec = defect_pixels_replaced(plane)
>>> rec["pixels"], rec["channels"][0]["replaced"], bool(abs(int(fixed[0, 10, 20]) - 400) < 60)
(1, True, True)
>>> bool((fixed[0] != plane[0]).sum() == 1)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["FLOOR", "MAX_FRACTION", "N_BINS", "THRESHOLD", "defect_pixels_replaced",
           "defect_statement", "defect_test"]

THRESHOLD = 12.0
"""How many noise scales a pixel must stand out from its neighbours' median to be a defect."""
MAX_FRACTION = 0.002
"""Above this fraction of a channel's pixels passing the test, nothing is replaced there."""
FLOOR = 0.1
"""The noise scale is at least this fraction of the largest (the brightest pixels') scale."""
TAIL, TAIL_Z = 0.99, 2.5758
"""The noise scale of a bin is its deviations' ``TAIL`` quantile over a Gaussian's
(``TAIL_Z``)."""
N_BINS = 16
"""Intensity bins (quantiles of the neighbour median) the noise scale is measured in."""

_NEIGHBOURS = np.ones((3, 3), bool)
_NEIGHBOURS[1, 1] = False


def defect_test(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, neighbour_median)`` of one channel ``(Y, X)``: how many noise scales each pixel
    stands out from the median of its 8 neighbours (signed), and that median."""
    x = np.asarray(channel, np.float64)
    med = ndimage.median_filter(x, footprint=_NEIGHBOURS, mode="mirror")
    d = x - med
    edges = np.unique(np.quantile(med, np.linspace(0.0, 1.0, N_BINS + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    idx = np.clip(np.searchsorted(edges, med, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(idx.ravel(), minlength=edges.size - 1)
    scales = np.full(edges.size - 1, np.nan)
    for b in np.flatnonzero(counts):
        v = d[idx == b]
        # the 99th percentile of the deviations, as a Gaussian's sigma: rare defects
        # (under 1 % of a bin) do not move it, a sparse rendering's spikes do
        scales[b] = np.quantile(np.abs(v - np.median(v)), TAIL) / TAIL_Z
    # an empty bin borrows its neighbour's scale; the floor: FLOOR of the largest scale
    # (a quiet dark background does not make faint spikes count) and one grey level
    good = np.isfinite(scales)
    centres = np.arange(scales.size)
    scales = np.interp(centres, centres[good], scales[good])
    floor = max(FLOOR * float(scales.max()), np.finfo(float).tiny)
    if np.issubdtype(np.asarray(channel).dtype, np.integer):
        floor = max(floor, 1.0)
    return d / np.maximum(scales[idx], floor), med


def defect_pixels_replaced(plane: np.ndarray, *, enabled: bool = True
                           ) -> tuple[np.ndarray, dict[str, Any]]:
    """``plane`` (C, Y, X) with its defect pixels replaced by their neighbours' median, and
    the record (JSON-able): ``checked``, ``threshold``, ``max_fraction``, ``pixels`` (replaced,
    all channels) and per channel ``candidates``, ``replaced`` (False when the candidates were
    too many to be defects), ``hot``, ``dead`` and ``fraction``. The input is not modified;
    without defects (or ``enabled=False``) the same array is returned.
    """
    data = np.asarray(plane)
    rec: dict[str, Any] = {"checked": bool(enabled), "threshold": THRESHOLD,
                           "max_fraction": MAX_FRACTION, "pixels": 0, "channels": []}
    if not enabled:
        return data, rec
    out = None
    for c, ch in enumerate(data):
        z, med = defect_test(ch)
        bad = np.abs(z) > THRESHOLD
        n = int(np.count_nonzero(bad))
        fraction = n / float(ch.size)
        replaced = 0 < n and fraction <= MAX_FRACTION
        rec["channels"].append({"candidates": n, "fraction": fraction, "replaced": replaced,
                                "hot": int(np.count_nonzero(z > THRESHOLD)),
                                "dead": int(np.count_nonzero(z < -THRESHOLD))})
        if not replaced:
            continue
        if out is None:
            out = data.copy()
        values = med[bad]
        if np.issubdtype(data.dtype, np.integer):
            values = np.rint(values)
        out[c][bad] = values.astype(data.dtype)
        rec["pixels"] += n
    return (data if out is None else out), rec


def defect_statement(rec: dict[str, Any]) -> str:
    """What :func:`defect_pixels_replaced` did, in words, per channel.

    >>> defect_statement({"checked": True, "pixels": 3, "channels": [
    ...     {"candidates": 3, "fraction": 1e-4, "replaced": True, "hot": 2, "dead": 1},
    ...     {"candidates": 900, "fraction": 0.01, "replaced": False, "hot": 900, "dead": 0}]})
    'channel 1: 2 hot and 1 dead pixel(s) replaced; channel 2: 900 spikes (1 % of the pixels), too many for defects, none replaced (a sparse rendering?)'
    """
    if not rec.get("checked"):
        return "not checked (--defect-pixels off)"
    parts = []
    for c, ch in enumerate(rec.get("channels", []), start=1):
        if ch["replaced"]:
            parts.append(f"channel {c}: {ch['hot']} hot and {ch['dead']} dead pixel(s) "
                         "replaced")
        elif ch["candidates"]:
            parts.append(f"channel {c}: {ch['candidates']} spikes ({100 * ch['fraction']:.2g} "
                         "% of the pixels), too many for defects, none replaced (a sparse "
                         "rendering?)")
        else:
            parts.append(f"channel {c}: none")
    return "; ".join(parts)
