"""The candidate grid of the automatic bandwidth choice: (delta, s) in micrometres, converted
to pixels, and its extension when the choice sits at an edge.

:func:`pipeline.estimate.bandwidth.select_bandwidth` evaluates these candidates (its module
text says how the grid is extended and flagged); the names are re-exported there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..mollifier import Mollifier

__all__ = [
    "DEFAULT_DELTAS_PX",
    "DEFAULT_WINDOWS_PX",
    "DEFAULT_DELTAS_UM",
    "DEFAULT_WINDOWS_UM",
    "MIN_DELTA_PX",
    "MIN_WINDOW_PX",
    "MAX_BORDER_FRACTION",
    "EXTEND_STEPS",
    "border_fraction",
    "candidate_grid",
]

DEFAULT_DELTAS_PX: tuple[float, ...] = (3, 4, 5, 7, 10, 14, 18)
DEFAULT_WINDOWS_PX: tuple[float, ...] = (2.5, 4, 5.5, 7.5, 10, 15, 22)
_REFERENCE_PIXEL_UM = 0.02
"""The pixel size at which the grid in pixels above is the grid in micrometres below."""
DEFAULT_DELTAS_UM: tuple[float, ...] = tuple(round(d * _REFERENCE_PIXEL_UM, 6)
                                             for d in DEFAULT_DELTAS_PX)
DEFAULT_WINDOWS_UM: tuple[float, ...] = tuple(round(s * _REFERENCE_PIXEL_UM, 6)
                                              for s in DEFAULT_WINDOWS_PX)
MIN_DELTA_PX = 2.5
MIN_WINDOW_PX = 1.5
MAX_BORDER_FRACTION = 0.25
"""Largest fraction of the field an extension of the delta grid may blank at the border."""
EXTEND_STEPS = 2


def _support_px(delta_px: float) -> int:
    return Mollifier(delta_px, 1.0, ("u",)).support_px


def border_fraction(delta_px: float, shape: Sequence[int]) -> float:
    """Fraction of an ``(H, W)`` field that the border band of radius ``delta_px`` blanks."""
    b, (h, w) = _support_px(delta_px), shape[-2:]
    return 1.0 - max(h - 2 * b, 0) * max(w - 2 * b, 0) / float(h * w)


def candidate_grid(pixel_size_um: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(deltas_px, windows_px)``: the micrometre grid in pixels, scaled up where it would
    fall below ``MIN_DELTA_PX`` / ``MIN_WINDOW_PX``.

    >>> candidate_grid(0.02)[0] == DEFAULT_DELTAS_PX
    True
    >>> candidate_grid(0.1)[0][0]
    2.5
    """
    out = []
    for grid, low in ((DEFAULT_DELTAS_UM, MIN_DELTA_PX), (DEFAULT_WINDOWS_UM, MIN_WINDOW_PX)):
        px = np.asarray(grid) / pixel_size_um
        px = px * max(1.0, low / px.min())
        out.append(tuple(float(round(v, 3)) for v in px))
    return out[0], out[1]


def _extend(grid: list[float], at_top: bool, low: float) -> list[float]:
    """Up to ``EXTEND_STEPS`` new values beyond the grid's end, at the end's ratio."""
    g = sorted(grid)
    if len(g) < 2:
        return []
    if at_top:
        ratio = g[-1] / g[-2]
        return [round(g[-1] * ratio**k, 3) for k in range(1, EXTEND_STEPS + 1)]
    ratio = g[1] / g[0]
    return [v for v in (round(g[0] / ratio**k, 3) for k in range(1, EXTEND_STEPS + 1))
            if v >= low]


def _edge(name: str, value: float, grid: list[float]) -> str:
    """A message when ``value`` is the smallest or largest of a grid of several values."""
    if len(grid) < 2 or value not in (grid[0], grid[-1]):
        return ""
    return f"{name} at the grid's {'largest' if value == grid[-1] else 'smallest'} value " \
           f"({value:g} px)"
