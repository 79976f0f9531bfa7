"""Checks of one plane of a stack before and after its fit: NaN pixels (a masked background:
flag ``nan-pixels``), a blank plane (no λ reported), a plane of noise only (no λ reported,
flag ``no-signal``) and an intensity level that drifted from the plane whose calibration the
stack shares (flag ``intensity-drift``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DRIFT", "NO_SIGNAL_CONTRAST", "SIGMA_CROP_PX", "empty_plane_note", "intensity_drift",
           "intensity_level", "missing_pixels", "no_signal_note", "signal_contrast"]

DRIFT = 0.1
"""A plane whose intensity above the dark level differs from that of the plane whose
calibration it uses by more than this fraction (any channel) is flagged ``intensity-drift``:
on one channel such a change moves λ like a calibration error of that size (15 % dimmer gave
λ 20-27 % lower on the sample image), on two channels less when both change alike."""


NO_SIGNAL_CONTRAST = 12.0
"""A channel whose :func:`signal_contrast` is below this holds no structure the noise could
not make: the plane is noise only (an empty field of view, a plane above or below the cells)
and no λ is reported for it (flag ``no-signal``). Chosen on the stress suite's tuning seeds
(``benchmarks/signal_contrast.py``): planes of white Gaussian or Poisson noise (128-1024 px,
pixels 0.015-0.2 µm) gave 3.5-6.8; every channel of every stress case gave 44 or more (the
dim camera case 44-58, up to 10600 for dense STORM renderings)."""
SIGMA_CROP_PX = 2048
"""The noise level is estimated on a central crop of at most this size (the noise of a
camera or a rendering does not depend on where it is read; the crop bounds the memory)."""


def signal_contrast(channel: np.ndarray, pixel_size_um: float, smooth_um: float) -> float:
    """How far above its own noise a channel's structure rises: the range (0.5th to 99.5th
    percentile) of the channel smoothed by a Gaussian of ``smooth_um`` (the segmentation's
    smoothing), in units of the standard deviation that smoothing leaves of white noise at
    the channel's noise level (:func:`skimage.restoration.estimate_sigma`, the wavelet
    estimate, on a central crop). Noise alone gives about 5; nuclei, or chromatin texture
    inside one, give tens to thousands. A channel whose noise reads as zero (a rendering
    with empty pixels between localisations) gives ``inf``.

    >>> rng = np.random.default_rng(0)
    >>> round(signal_contrast(100 + 5 * rng.standard_normal((256, 256)), 0.02, 0.2))
    5
    >>> yy, xx = np.mgrid[:256, :256]
    >>> cell = 100 + 20 * ((yy - 128) ** 2 + (xx - 128) ** 2 < 60 ** 2)
    >>> bool(signal_contrast(cell + 5 * rng.standard_normal((256, 256)), 0.02, 0.2) > 100)
    True
    """
    from scipy.ndimage import gaussian_filter
    from skimage.measure import block_reduce
    from skimage.restoration import estimate_sigma

    from pipeline.estimate.bandwidth import central_crop

    sigma = float(estimate_sigma(np.asarray(central_crop(channel, SIGMA_CROP_PX), np.float64)))
    if not sigma > 0:
        return float("inf")
    s = max(1.0, smooth_um / pixel_size_um)
    b = max(1, int(s // 2))  # binned (mean of b x b) before smoothing: memory and time
    h, w = (np.shape(channel)[-2] // b) * b, (np.shape(channel)[-1] // b) * b  # whole blocks
    small = block_reduce(np.asarray(channel[:h, :w], np.float32), (b, b), np.mean)
    smooth = gaussian_filter(small, s / b, mode="reflect")
    lo, hi = np.percentile(smooth, [0.5, 99.5])
    # white noise of sd sigma, binned by b and smoothed by s / b binned pixels: sd sigma/(2√π s)
    return float(hi - lo) / (sigma / (2 * np.sqrt(np.pi) * s))


def no_signal_note(plane: int, contrasts: list[float], roles: tuple[str, ...]) -> str | None:
    """Why plane ``plane`` holds noise only, or None, from its channels' :func:`signal_contrast`.

    >>> no_signal_note(2, [5.3], ("heterochromatin",))[:68]
    'plane 2: the heterochromatin channel shows no structure above its no'
    >>> no_signal_note(2, [80.0], ("heterochromatin",)) is None
    True
    """
    for c, role in enumerate(roles):
        if contrasts[c] < NO_SIGNAL_CONTRAST:
            return (f"plane {plane}: the {role} channel shows no structure above its noise "
                    f"(contrast {contrasts[c]:.1f} noise SDs, noise alone gives about 5; "
                    f"below {NO_SIGNAL_CONTRAST:g}: an empty field of view, or a plane above "
                    "or below the cells): no λ reported")
    return None


def intensity_level(plane: np.ndarray, calib: dict[str, Any], foreground: np.ndarray | None
                    ) -> list[float]:
    """Per channel, the median intensity above the calibration's offset over ``foreground``
    (the nuclei; None: the whole plane)."""
    out = []
    for c, ch in enumerate(calib["channels"]):
        values = plane[c] if foreground is None else plane[c][foreground]
        out.append(float(np.median(values)) - float(ch["offset"]) if values.size else
                   float("nan"))
    return out


def intensity_drift(plane: int, level: list[float], reference: dict[str, Any], *,
                    shared: bool = True) -> str | None:
    """Why ``plane``'s λ may be off because its intensity level (:func:`intensity_level`)
    differs from that of ``reference`` (the record of the first plane fitted, whose
    calibration every plane of the stack shares), or None. ``shared`` False (``--calibration
    auto``, which calibrates each plane on its own percentiles): None.

    >>> intensity_drift(2, [85.0], {"plane": 0, "intensity_level": [100.0]})[:85]
    'plane 2: its intensity above the dark level is 0.85 (channel 0) times that of plane 0'
    >>> intensity_drift(2, [95.0], {"plane": 0, "intensity_level": [100.0]}) is None
    True
    """
    if not shared:
        return None
    ref = reference.get("intensity_level") or []
    ratios = [lv / rv if rv > 0 else float("nan") for lv, rv in zip(level, ref, strict=True)]
    off = [(c, r) for c, r in enumerate(ratios) if not (abs(r - 1) <= DRIFT)]
    if not off:
        return None
    said = ", ".join(f"{r:.2f} (channel {c})" for c, r in off)
    return (f"plane {plane}: its intensity above the dark level is {said} times that of "
            f"plane {reference['plane']}, whose calibration it shares (bleaching, depth?): "
            "λ shifts as under a calibration error of that size (most with one channel): "
            "compare its λ with the other planes' with care")


def empty_plane_note(plane: int, low: np.ndarray, high: np.ndarray,
                     roles: tuple[str, ...]) -> str | None:
    """Why plane ``plane`` holds no image, or None, from its channels' minima ``low`` and
    maxima ``high``: a channel with one value everywhere (a blank plane of a stack, a shutter
    that did not open). No λ is reported there; a fit would read the flat field as chromatin
    at a uniform occupancy.

    >>> empty_plane_note(1, np.array([0]), np.array([0]), ("heterochromatin",))
    'plane 1: the heterochromatin channel is 0 everywhere (an empty plane): no λ reported'
    """
    for c, role in enumerate(roles):
        if low[c] == high[c]:
            return (f"plane {plane}: the {role} channel is {low[c]:g} everywhere (an empty "
                    "plane): no λ reported")
    return None


def missing_pixels(plane: np.ndarray, index: int) -> tuple[np.ndarray | None, str | None]:
    """The pixels of ``plane`` ``(C, Y, X)`` that are NaN in any channel (Fiji's *NaN
    Background*, a masked region), and a note for the user; ``(None, None)`` when none are.

    They are read as a dark background (0) and treated as holes: outside every nucleus, no λ
    within the derivative support of them.

    >>> p = np.ones((1, 4, 5), np.float32); p[0, 0, :2] = np.nan
    >>> mask, note = missing_pixels(p, 3)
    >>> int(mask.sum()), note[:42]
    (2, 'plane 3: 2 pixel(s) (10 %) are NaN in the ')
    """
    if plane.dtype.kind != "f":
        return None, None
    mask = np.isnan(plane).any(axis=0)
    n = int(mask.sum())
    if not n:
        return None, None
    return mask, (f"plane {index}: {n} pixel(s) ({100 * n / mask.size:.2g} %) are NaN in the "
                  "file (a NaN background or masked region): read as outside the nuclei, no λ "
                  "within the derivative support of them; the dark level cannot be read from a "
                  "NaN background (pass --dark-frame or OFFSET:SCALE pairs if the data keep "
                  "a camera offset)")
