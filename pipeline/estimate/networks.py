"""The two networks of the neural fit, with batched weights (one set per tile x member).

Every parameter carries a leading batch axis ``B``; members never mix (the loss is a sum of
per-member terms and Adam is element-wise), so a batched fit equals member-by-member fits with
the same seeds.

**Field network** (:class:`FieldNet`): a multiresolution feature grid (``levels`` grids of
``features`` channels at spacings ``h, 2h, ...`` pixels, bicubically interpolated to the
pixel grid) read by a per-pixel MLP decoder, plus a skip grid at spacing ``h`` that carries
the field's value (initialised to the area-averaged data). Its capacity is set by ``h``, tied
to the mollifier radius: it cannot represent pixel-scale noise, which is what keeps the field
from absorbing the PDE residual. Its output on the pixel grid goes through the mollifier
layer inside the training graph.

**Rate network** (:class:`RateNet`): a coordinate MLP on random Fourier features whose
frequencies have scale ``1 / length`` (the rate window), evaluated on a grid of half that
spacing and upsampled; its output is bounded by a scaled sigmoid to ``[lo, hi]``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FieldNet", "RateNet", "coarse_shape"]


def coarse_shape(shape: tuple[int, int], spacing_px: float) -> tuple[int, int]:
    """Nodes of a grid of ``spacing_px`` spanning ``shape`` (corners included, >= 2).

    >>> coarse_shape((64, 64), 20.0)
    (5, 5)
    """
    sp = max(float(spacing_px), 1.0)
    return tuple(max(2, int(math.ceil((n - 1) / sp)) + 1) for n in shape)  # type: ignore


class _Draws:
    """Standard normal draws with one generator per batch element, so that element ``b``'s
    parameters depend only on its own seed, never on the batch it is fitted in."""

    def __init__(self, seeds) -> None:
        import torch

        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, *shape: int, dtype=None, device=None):
        import torch

        out = torch.stack([torch.randn(*shape, generator=g, dtype=torch.float64)
                           for g in self.gens])
        return out.to(dtype=dtype, device=device)


def _linear(draw: _Draws, n_in: int, n_out: int, dtype, device, *, zero: bool = False):
    import torch

    b = len(draw.gens)
    if zero:
        w = torch.zeros(b, n_out, n_in, dtype=dtype, device=device)
    else:
        w = draw(n_out, n_in, dtype=dtype, device=device) * math.sqrt(2.0 / n_in)
    return w.requires_grad_(True), torch.zeros(b, n_out, dtype=dtype, device=device
                                              ).requires_grad_(True)


def _up(x, shape):
    import torch.nn.functional as F

    return F.interpolate(x, size=shape, mode="bicubic", align_corners=True)


class FieldNet:
    """Batched field network for ``B`` problems of ``C`` channels on an ``(H, W)`` grid.

    Parameters
    ----------
    y
        ``(B, C, H, W)`` tensor: the data it starts from (the skip grid is their area average).
    spacing_px
        Finest grid spacing ``h`` in pixels.
    """

    def __init__(self, y, spacing_px: float, seeds, *, features: int = 8, levels: int = 2,
                 hidden: int = 32) -> None:
        import torch.nn.functional as F

        b, c, h, w = y.shape
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for a batch of {b}")
        self.shape = (h, w)
        dt, dev = y.dtype, y.device
        draw = _Draws(seeds)
        g0 = coarse_shape((h, w), spacing_px)
        self.skip = F.interpolate(y, size=g0, mode="area").detach().clone().requires_grad_(True)
        self.grids = []
        for lev in range(levels):
            gs = coarse_shape((h, w), spacing_px * 2**lev)
            g = 0.1 * draw(features, *gs, dtype=dt, device=dev)
            self.grids.append(g.requires_grad_(True))
        n_in = features * levels
        self.w1, self.b1 = _linear(draw, n_in, hidden, dt, dev)
        self.w2, self.b2 = _linear(draw, hidden, c, dt, dev, zero=True)

    def parameters(self) -> list:
        return [self.skip, *self.grids, self.w1, self.b1, self.w2, self.b2]

    def __call__(self):
        import torch

        feats = torch.cat([_up(g, self.shape) for g in self.grids], dim=1)  # (B, F, H, W)
        hid = torch.nn.functional.silu(torch.einsum("bof,bfhw->bohw", self.w1, feats)
                                       + self.b1[..., None, None])
        out = torch.einsum("boi,bihw->bohw", self.w2, hid) + self.b2[..., None, None]
        return _up(self.skip, self.shape) + out


class RateNet:
    """Batched bounded rate network on an ``(H, W)`` grid of ``pixel_size`` um.

    ``lam = lo + (hi - lo) * sigmoid(MLP(sin(x . w_j), cos(x . w_j)))`` with frequencies
    ``w_j ~ N(0, 1 / length^2)`` (rad/um), evaluated on a grid of spacing ``length / 2`` and
    upsampled bicubically.
    """

    def __init__(self, seeds, shape: tuple[int, int], pixel_size_um: float, length_um: float,
                 lo: float, hi: float, *, frequencies: int = 16, hidden: int = 32, dtype=None,
                 device=None) -> None:
        import torch

        if not hi > lo:
            raise ValueError(f"lambda bounds must satisfy min < max, got [{lo}, {hi}]")
        self.lo, self.hi, self.shape = float(lo), float(hi), tuple(shape)
        draw = _Draws(seeds)
        gs = coarse_shape(shape, 0.5 * length_um / pixel_size_um)
        ys = np.linspace(0, shape[0] - 1, gs[0]) * pixel_size_um
        xs = np.linspace(0, shape[1] - 1, gs[1]) * pixel_size_um
        yy, xx = np.meshgrid(ys - ys.mean(), xs - xs.mean(), indexing="ij")
        coords = torch.as_tensor(np.stack([yy, xx]), dtype=dtype, device=device)  # (2, gy, gx)
        freq = draw(frequencies, 2, dtype=dtype, device=device) / length_um
        phase = torch.einsum("bfk,kyx->bfyx", freq, coords)
        self.features = torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)  # (B, 2F, gy, gx)
        self.w1, self.b1 = _linear(draw, 2 * frequencies, hidden, dtype, device)
        self.w2, self.b2 = _linear(draw, hidden, hidden, dtype, device)
        self.w3, self.b3 = _linear(draw, hidden, 1, dtype, device, zero=True)
        self.grid_shape = gs

    def parameters(self) -> list:
        return [self.w1, self.b1, self.w2, self.b2, self.w3, self.b3]

    def set_level(self, lam0) -> None:
        """Start at the constant ``lam0`` ``(B,)`` (the output bias's logit)."""
        import torch

        p = ((lam0 - self.lo) / (self.hi - self.lo)).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.b3[:, 0] = torch.log(p / (1 - p))

    def __call__(self):
        import torch

        act = torch.nn.functional.silu
        h = act(torch.einsum("bof,bfyx->boyx", self.w1, self.features)
                + self.b1[..., None, None])
        h = act(torch.einsum("boi,biyx->boyx", self.w2, h) + self.b2[..., None, None])
        logit = torch.einsum("boi,biyx->boyx", self.w3, h) + self.b3[..., None, None]
        return (self.lo + (self.hi - self.lo) * torch.sigmoid(_up(logit, self.shape)))[:, 0]
