"""Mollified local least squares: the closed-form rate estimator (docs/science.md section 4).

For a model whose residual is linear in the unknown, ``R = A lam - B``, the estimate at x is the
weighted least-squares fit of a constant ``lam`` over a Gaussian window of width ``s``::

    lam(x) = G_s * (w A B) / G_s * (w A^2)

where ``A`` and ``B`` are built from mollified derivative maps (radius ``delta``) and ``w`` is
0 on the image border band that reflect padding contaminates, 1 elsewhere. The window width
is the rate map's spatial bandwidth. Pixels where ``A`` is small are not identifiable: they
are masked and never given a confident number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter

from ..mollifier import Backend, Mollifier
from ..physics.base import LinearResidualModel, prepare

__all__ = [
    "LinearTerms",
    "linear_terms",
    "local_least_squares",
    "identifiable_mask",
    "nuclei_weight",
]

log = logging.getLogger(__name__)


@dataclass
class LinearTerms:
    """``A`` and ``B`` maps of shape ``(..., H, W)`` and the border weight ``w`` (H, W)."""

    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray
    delta_um: float
    support_px: int


def linear_terms(
    fields: np.ndarray,
    model: LinearResidualModel,
    delta_um: float,
    pixel_size_um: float,
    *,
    backend: Backend = "spectral",
    border_px: int | None = None,
) -> LinearTerms:
    """Mollify ``fields`` and return the model's ``A``, ``B`` and the border weight.

    Parameters
    ----------
    fields
        ``(C, H, W)`` or a batch ``(N, C, H, W)`` of fields in the model's channel order.
    model
        A :class:`~pipeline.physics.base.LinearResidualModel`.
    delta_um, pixel_size_um
        Mollifier radius and grid spacing (micrometres).
    border_px
        Width of the band at the image edge given zero weight (default: the operator's
        support, where reflect padding reaches the derivatives).
    """
    import torch

    arr = np.asarray(fields, dtype=np.float64)
    batch = prepare(model, arr if arr.ndim == 4 else arr[None])
    layer = Mollifier(delta_um, pixel_size_um, model.derivatives, backend=backend)
    with torch.no_grad():
        maps = layer(torch.as_tensor(batch))
    a, b = model.linear_terms({k: v.numpy() for k, v in maps.items()})
    if arr.ndim == 3:
        a, b = a[0], b[0]
    border = layer.support_px if border_px is None else int(border_px)
    h, w = arr.shape[-2:]
    weight = np.zeros((h, w))
    if 2 * border < min(h, w):
        weight[border : h - border, border : w - border] = 1.0
    else:
        weight[:] = 1.0  # a tile smaller than two supports: keep everything, flagged by caller
    return LinearTerms(a=a, b=b, weight=weight, delta_um=delta_um, support_px=layer.support_px)


def _smooth(x: np.ndarray, sigma_px: float) -> np.ndarray:
    sig = [0.0] * (x.ndim - 2) + [sigma_px, sigma_px]
    return gaussian_filter(x, sig, mode="reflect", truncate=3.0)


def local_least_squares(
    terms: LinearTerms,
    window_um: float,
    pixel_size_um: float,
    *,
    lambda_min: float = 0.0,
    lambda_max: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``lam = G_s*(w A B) / G_s*(w A^2)``, clipped to ``[lambda_min, lambda_max]``.

    Returns ``(lam, denominator)``; the denominator ``G_s*(w A^2)`` measures how much
    information the window holds and feeds :func:`identifiable_mask`.
    """
    sigma_px = window_um / pixel_size_um
    w = terms.weight
    num = _smooth(w * terms.a * terms.b, sigma_px)
    den = _smooth(w * terms.a**2, sigma_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = num / den
    lam = np.where(np.isfinite(lam), lam, np.nan)
    return np.clip(lam, lambda_min, lambda_max), den


def identifiable_mask(
    terms: LinearTerms, denominator: np.ndarray, *, fraction: float = 0.1
) -> np.ndarray:
    """True where ``lam`` is identifiable: both the pixel's own ``A^2`` and the window's
    ``G_s*(w A^2)`` exceed ``fraction`` of the median over the weighted interior."""
    a2 = terms.a**2
    inside = terms.weight > 0
    ref = float(np.median(a2[..., inside])) if inside.any() else float(np.median(a2))
    ref_den = float(np.median(denominator[..., inside])) if inside.any() else ref
    if not (ref > 0 and ref_den > 0):
        return np.zeros(a2.shape, dtype=bool)
    return (a2 > fraction * ref) & (denominator > fraction * ref_den)


def nuclei_weight(foreground: np.ndarray | None, support_px: int) -> np.ndarray | None:
    """The least-squares weight of the nuclei ``foreground`` (``(H, W)`` bool): the pixels
    farther inside them than the derivative support ``support_px``, whose mollified terms see
    neither the nuclear edge nor the dark background (neither is chromatin structure). ``None``
    (no nuclei) weighs every pixel.

    The fit, the bandwidth choice and the benchmarks' best fixed bandwidth all weigh with it.

    >>> fg = np.zeros((9, 9), bool); fg[1:8, 1:8] = True
    >>> int(nuclei_weight(fg, 2).sum()), nuclei_weight(None, 2) is None
    (9, True)
    """
    if foreground is None:
        return None
    return binary_erosion(np.asarray(foreground, bool), iterations=int(support_px))
