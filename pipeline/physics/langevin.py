"""First-order benchmark: the Langevin-type problem ``u_t = u + lam(t)``.

A 1-D signal in time; derivative maps have shape ``(..., C, T)`` and ``"x"`` is ``d/dt``
(use a ``Mollifier(..., ndim=1)``). ``A = 1``, ``B = u_t - u``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LangevinModel"]


@dataclass(frozen=True)
class LangevinModel:
    """``u_t = u + lam(t)``: the residual ``R = lam - (u_t - u)``.

    >>> import numpy as np
    >>> d = {"u": np.ones((1, 3)), "x": np.full((1, 3), 3.0)}
    >>> A, B = LangevinModel().linear_terms(d)
    >>> (B / A).tolist()
    [2.0, 2.0, 2.0]
    """

    name: str = "langevin"
    order: int = 1
    fields: tuple[str, ...] = ("u",)
    derivatives: tuple[str, ...] = ("u", "x")

    def linear_terms(self, d: Mapping[str, Any]) -> tuple[Any, Any]:
        u, ut = d["u"][..., 0, :], d["x"][..., 0, :]
        return 1 + 0 * u, ut - u
