"""Batched parametrisations and loss of the neural per-tile fit (see :mod:`.neural`).

Every tensor carries a leading batch axis ``B = tiles x members``; parameters of different
members never mix (the loss is a *sum* of per-member terms and Adam is element-wise), so a
batched fit equals member-by-member fits with the same seeds.

- **Rate network**: ``lam = lam_min + (lam_max - lam_min) * sigmoid(up(theta))``, ``theta`` a
  coarse grid of logits (spacing ``rate_spacing * s``) upsampled bicubically to the pixel
  grid: bounded, and its spatial bandwidth is set by the grid spacing.
- **Field network**: a learnable pixel grid ``g = y + delta`` (the degenerate feature grid: one
  feature per pixel, identity decoder), read through the mollifier layer, or ``"frozen"``
  (``delta = 0``).
- **Loss** per member: mean over channels and pixels of ``((u - eta*y) / sigma_eta)^2`` (data
  misfit of the mollified field, in units of the mollified noise variance) plus
  ``residual_weight * mean(w R^2) / mean(w R_0^2)`` (the PDE residual, normalised by its value
  at the closed-form start ``R_0``; ``w`` masks the reflect-padded border band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..mollifier import Mollifier
from ..physics.base import LinearResidualModel

__all__ = ["RateGrid", "grid_shape", "logit_init", "BatchedFit"]


def grid_shape(shape: tuple[int, int], spacing_px: float) -> tuple[int, int]:
    """Nodes of a rate grid of ``spacing_px`` spanning ``shape`` (corners included, >= 2).

    >>> grid_shape((64, 64), 20.0)
    (5, 5)
    """
    sp = max(float(spacing_px), 1.0)
    return tuple(max(2, int(math.ceil((n - 1) / sp)) + 1) for n in shape)  # type: ignore[return-value]


def logit_init(lam: np.ndarray, gshape: tuple[int, int], lo: float, hi: float) -> np.ndarray:
    """Logits of ``lam`` (``(..., H, W)``, NaN allowed) sampled at the rate-grid nodes.

    NaN (unidentifiable) pixels take the finite median of their map; values are clipped just
    inside ``(lo, hi)``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    h, w = lam.shape[-2:]
    flat = lam.reshape(-1, h, w).copy()
    for m in flat:
        fill = np.nanmedian(m) if np.isfinite(m).any() else 0.5 * (lo + hi)
        m[~np.isfinite(m)] = fill
    iy = np.round(np.linspace(0, h - 1, gshape[0])).astype(int)
    ix = np.round(np.linspace(0, w - 1, gshape[1])).astype(int)
    p = (flat[:, iy][:, :, ix] - lo) / (hi - lo)
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).reshape(lam.shape[:-2] + gshape)


class RateGrid:
    """Bounded rate map from a coarse logit grid ``theta (B, 1, gh, gw)``."""

    def __init__(self, lo: float, hi: float, shape: tuple[int, int]) -> None:
        if not hi > lo:
            raise ValueError(f"lambda bounds must satisfy min < max, got [{lo}, {hi}]")
        self.lo, self.hi, self.shape = float(lo), float(hi), tuple(shape)

    def __call__(self, theta):
        import torch
        import torch.nn.functional as F

        up = F.interpolate(theta, size=self.shape, mode="bicubic", align_corners=True)
        return (self.lo + (self.hi - self.lo) * torch.sigmoid(up))[:, 0]


@dataclass
class BatchedFit:
    """One batched optimisation over ``B`` independent (tile, member) problems.

    Parameters
    ----------
    y
        ``(B, C, H, W)`` member data (noise-resampled fields).
    sigma
        ``(B, C)`` per-channel noise std; channels with 0 are constant and never learned.
    theta0
        ``(B, 1, gh, gw)`` initial rate logits.
    ab0
        ``(A, B)`` maps ``(B, H, W)`` of each member's own bandwidth; used by a frozen field
        instead of the ones from ``mollifier`` (bandwidth jitter).
    """

    model: LinearResidualModel
    mollifier: Mollifier
    rate: RateGrid
    y: object
    sigma: object
    theta0: object
    learn_field: bool
    residual_weight: float
    ab0: tuple | None = None

    def __post_init__(self) -> None:
        import torch

        y = self.y
        h, w = y.shape[-2:]
        b = self.mollifier.support_px
        wb = torch.zeros(h, w, dtype=y.dtype, device=y.device)
        if 2 * b < min(h, w):
            wb[b : h - b, b : w - b] = 1.0
        else:
            wb[:] = 1.0
        self.border = wb
        self.theta = self.theta0.detach().clone().requires_grad_(True)
        self.learned = self.sigma > 0  # (B, C) bool
        eta = torch.as_tensor(self.mollifier.kernel, dtype=y.dtype, device=y.device)
        self.sigma_eta = self.sigma * torch.sqrt((eta**2).sum())
        with torch.no_grad():
            d0 = self.mollifier(y)
            self.u0 = d0["u"]
            a, bb = self.model.linear_terms(d0) if self.ab0 is None else self.ab0
            self._ab = (a, bb)
            r0 = a * self.rate(self.theta) - bb
            self.r0 = (wb * r0**2).sum(dim=(-2, -1)) / wb.sum()  # (B,)
        self.delta = torch.zeros_like(y).requires_grad_(self.learn_field)

    def parameters(self, lr_rate: float, lr_field: float) -> list[dict]:
        groups = [{"params": [self.theta], "lr": lr_rate}]
        if self.learn_field:
            groups.append({"params": [self.delta], "lr": lr_field})
        return groups

    def terms(self):
        """Per-member ``(data, residual, lam)``: data and residual are ``(B,)``."""
        import torch

        lam = self.rate(self.theta)
        if self.learn_field:
            g = self.y + self.delta * self.learned[..., None, None]
            d = self.mollifier(g)
            a, bb = self.model.linear_terms(d)
            z = torch.where(
                self.learned[..., None, None],
                (d["u"] - self.u0) / self.sigma_eta.clamp_min(1e-12)[..., None, None],
                torch.zeros_like(d["u"]),
            )
            n_learned = self.learned.sum(dim=1).clamp_min(1)
            data = (z**2).mean(dim=(-2, -1)).sum(dim=1) / n_learned
        else:
            a, bb = self._ab
            data = torch.zeros(lam.shape[0], dtype=lam.dtype, device=lam.device)
        r = a * lam - bb
        res = (self.border * r**2).sum(dim=(-2, -1)) / self.border.sum()
        res = res / self.r0.clamp_min(1e-30)
        return data, res, lam

    def loss(self):
        data, res, lam = self.terms()
        return (data + self.residual_weight * res).sum(), data, res, lam
