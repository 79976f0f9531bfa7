"""The residual protocol: the only place a PDE is named.

A model says which fields it reads (channel order of the field tensor), which derivative maps
it needs, and how its residual is built from them. All three of chromarate's models are linear
in the unknown parameter: ``R = A * lam - B``. That structure is what the closed-form local
least-squares estimator uses; the neural fit only needs :meth:`residual`.

The functions use only ``+ - * **`` and indexing, so they work on NumPy arrays and on torch
tensors alike. Derivative maps have shape ``(..., C, H, W)`` (C = ``len(fields)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["LinearResidualModel", "prepare", "residual"]


@runtime_checkable
class LinearResidualModel(Protocol):
    """A steady-state PDE whose residual is linear in the unknown map ``lam``."""

    name: str
    order: int
    fields: tuple[str, ...]
    derivatives: tuple[str, ...]

    def linear_terms(self, d: Mapping[str, Any]) -> tuple[Any, Any]:
        """Return ``(A, B)`` with residual ``R = A * lam - B``, each of shape ``(..., H, W)``."""
        ...


def prepare(model: Any, fields: Any) -> Any:
    """The channels to mollify for ``model``: ``model.prepare(fields)`` where a model derives
    extra channels (the chromatin model's ``g(phi_h)``), else ``fields`` unchanged."""
    fn = getattr(model, "prepare", None)
    return fields if fn is None else fn(fields)


def residual(model: LinearResidualModel, d: Mapping[str, Any], lam: Any) -> Any:
    """The PDE residual ``A * lam - B`` of ``model`` for derivative maps ``d``."""
    a, b = model.linear_terms(d)
    return a * lam - b
