"""Checks of one plane of a stack before and after its fit: NaN pixels (a masked background:
flag ``nan-pixels``), a blank plane (no λ reported) and an intensity level that drifted from
the plane whose calibration the stack shares (flag ``intensity-drift``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DRIFT", "empty_plane_note", "intensity_drift", "intensity_level", "missing_pixels"]

DRIFT = 0.1
"""A plane whose intensity above the dark level differs from that of the plane whose
calibration it uses by more than this fraction (any channel) is flagged ``intensity-drift``:
on one channel such a change moves λ like a calibration error of that size (15 % dimmer gave
λ 20-27 % lower on the sample image), on two channels less when both change alike."""


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
