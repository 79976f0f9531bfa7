"""Saturated pixels: a channel clipped at its detector's ceiling.

A camera (or an 8-bit export) that runs out of range writes its ceiling, ``2**bits - 1``, and
every brighter pixel reads the same. The fields there are flat, their derivatives are zero,
and λ around them is wrong whatever the bandwidth. Such pixels are found on the raw integer
plane: a channel whose maximum is one of :data:`CEILINGS` has its pixels at that maximum
saturated. The fit leaves out every pixel whose derivative support reaches one (they are
holes in its weight, as the nuclear edge is), and the plane is flagged ``saturated``.

A maximum below every ceiling is never taken as saturation, however often it occurs: a sparse
rendering's largest count can repeat by chance. Floating-point images carry no ceiling and are
not checked.

Examples
--------
>>> plane = np.array([[[10, 4095, 4095], [7, 8, 9]]], np.uint16)
>>> mask, rec = saturated_pixels(plane)
>>> mask.astype(int).tolist(), rec["pixels"], rec["channels"][0]["ceiling"]
([[0, 1, 1], [0, 0, 0]], 2, 4095)
>>> saturated_pixels(np.array([[[10, 3000, 3000]]], np.uint16))[1]["pixels"]
0
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CEILINGS", "saturated_pixels"]

CEILINGS = tuple(2**bits - 1 for bits in (8, 10, 12, 14, 15, 16))
"""The values a detector writes when it saturates: full scale of 8 to 16 bits (15: a signed
16-bit export)."""


def saturated_pixels(plane: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The saturated pixels of one raw plane ``(C, Y, X)`` (any channel) and their record.

    Returns ``(mask, record)``: ``mask`` is boolean ``(Y, X)``, or ``None`` when no pixel is
    saturated; ``record`` (JSON-able) has ``checked`` (False for floating-point data),
    ``pixels``, ``fraction`` and per channel ``ceiling`` (None when its maximum is no
    ceiling) and ``pixels``.
    """
    data = np.asarray(plane)
    if data.dtype.kind not in "iu":
        return None, {"checked": False, "pixels": 0, "fraction": 0.0, "channels": []}
    mask = None
    channels = []
    for ch in data:
        top = int(ch.max())
        hit = ch == top if top in CEILINGS else None
        count = int(np.count_nonzero(hit)) if hit is not None else 0
        channels.append({"ceiling": top if hit is not None else None, "pixels": count})
        if count:
            mask = hit if mask is None else mask | hit
    n = int(np.count_nonzero(mask)) if mask is not None else 0
    return mask, {"checked": True, "pixels": n, "fraction": n / float(data[0].size),
                  "channels": channels}
