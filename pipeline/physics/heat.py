"""Second-order benchmark: steady heat with variable conductivity, ``0 = lam lap(u) + m``.

Field: ``u``; the source ``m(x, y)`` is known. ``A = lap(u)``, ``B = -m``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HeatModel"]


@dataclass(frozen=True)
class HeatModel:
    """``0 = lam(x, y) lap(u) + m(x, y)`` with a known source ``m`` (array ``(H, W)``).

    >>> import numpy as np
    >>> d = {"u": np.zeros((1, 2, 2)), "lap": np.full((1, 2, 2), -2.0)}
    >>> A, B = HeatModel(source=np.ones((2, 2))).linear_terms(d)
    >>> float((B / A)[0, 0])
    0.5
    """

    source: Any = field(repr=False, default=None)
    name: str = "heat"
    order: int = 2
    fields: tuple[str, ...] = ("u",)
    derivatives: tuple[str, ...] = ("u", "lap")

    def linear_terms(self, d: Mapping[str, Any]) -> tuple[Any, Any]:
        if self.source is None:
            raise ValueError("HeatModel needs its known source m(x, y)")
        lap = d["lap"][..., 0, :, :]
        return lap, -self.source + 0 * lap
