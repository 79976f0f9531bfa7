"""The networks both benchmark arms share: a coordinate field MLP and a bounded rate MLP.

Both map pixel-centre coordinates ``(N, 2)`` ordered ``(y, x)`` in micrometres to values
``(N, C)``; each output row depends only on its own input row, as
:func:`pipeline.mollifier.autograd_derivatives` requires. Inputs are scaled to ``[-1, 1]`` by
the problem's extent and lifted by fixed random Fourier features, whose scale sets the
network's spatial bandwidth (small for the rate network, whose λ should vary on a
controlled scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["CoordinateMLP", "RateMLP", "build_networks"]


def _torch():
    import torch

    return torch


class CoordinateMLP(_torch().nn.Module):
    """``tanh`` MLP on Fourier features of scaled coordinates.

    Parameters
    ----------
    out_dim
        Number of output channels.
    extent
        Physical size along ``(y, x)``; coordinates are mapped to ``2 c / extent - 1``.
    axes
        Input columns used: ``(0, 1)`` for images, ``(1,)`` for a 1-D signal.
    width, depth
        Hidden width and number of hidden layers.
    n_features, feature_scale
        Number of random Fourier frequencies and their standard deviation (in cycles over the
        scaled domain ``[-1, 1]``).
    out_shift, out_scale
        The output is ``out_shift + out_scale * net(...)`` (per channel) so that a network at
        initialisation already lies in the data's range.
    seed
        Seed of the weights and the frequencies: two arms built with the same seed start from
        identical networks.

    Examples
    --------
    >>> import torch
    >>> net = CoordinateMLP(2, extent=(1.0, 1.0), seed=0)
    >>> net(torch.zeros(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        out_dim: int,
        *,
        extent: Sequence[float],
        axes: Sequence[int] = (0, 1),
        width: int = 64,
        depth: int = 3,
        n_features: int = 32,
        feature_scale: float = 2.0,
        out_shift: Sequence[float] | float = 0.0,
        out_scale: Sequence[float] | float = 1.0,
        seed: int = 0,
    ) -> None:
        torch = _torch()
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.axes = tuple(int(a) for a in axes)
        ext = torch.tensor([float(extent[a]) for a in self.axes], dtype=torch.float64)
        self.register_buffer("inv_extent", 2.0 / ext)
        freqs = torch.randn(len(self.axes), n_features, generator=gen, dtype=torch.float64)
        self.register_buffer("freqs", math.pi * feature_scale * freqs)
        layers: list = []
        n_in = 2 * n_features + len(self.axes)
        for _ in range(depth):
            layers += [torch.nn.Linear(n_in, width, dtype=torch.float64), torch.nn.Tanh()]
            n_in = width
        layers.append(torch.nn.Linear(n_in, out_dim, dtype=torch.float64))
        with torch.no_grad():
            for layer in layers:
                if isinstance(layer, torch.nn.Linear):
                    bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.zero_()
        self.body = torch.nn.Sequential(*layers)
        shift = torch.as_tensor(out_shift, dtype=torch.float64).reshape(-1)
        scale = torch.as_tensor(out_scale, dtype=torch.float64).reshape(-1)
        self.register_buffer("out_shift", shift.expand(out_dim).clone())
        self.register_buffer("out_scale", scale.expand(out_dim).clone())

    def forward(self, coords):
        torch = _torch()
        z = coords[:, list(self.axes)] * self.inv_extent - 1.0
        proj = z @ self.freqs
        h = torch.cat([torch.sin(proj), torch.cos(proj), z], dim=1)
        return self.out_shift + self.out_scale * self.body(h)


class RateMLP(_torch().nn.Module):
    """A bounded rate map ``λ = lo + (hi - lo) sigmoid(net(x))`` (one channel).

    Starts near the centre of ``[lo, hi]`` in the log sense when ``init`` is not given.

    >>> import torch
    >>> net = RateMLP((0.1, 5.0), extent=(1.0, 1.0), seed=0)
    >>> bool(((net(torch.rand(7, 2)) > 0.1) & (net(torch.rand(7, 2)) < 5.0)).all())
    True
    """

    def __init__(
        self,
        bounds: tuple[float, float],
        *,
        extent: Sequence[float],
        axes: Sequence[int] = (0, 1),
        width: int = 32,
        depth: int = 2,
        n_features: int = 16,
        feature_scale: float = 1.0,
        init: float | None = None,
        seed: int = 1,
    ) -> None:
        super().__init__()
        lo, hi = float(bounds[0]), float(bounds[1])
        if not hi > lo:
            raise ValueError(f"rate bounds must satisfy lo < hi, got {bounds!r}")
        self.lo, self.hi = lo, hi
        start = init if init is not None else 0.5 * (lo + hi)
        frac = min(max((start - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        self.net = CoordinateMLP(
            1, extent=extent, axes=axes, width=width, depth=depth, n_features=n_features,
            feature_scale=feature_scale, out_shift=math.log(frac / (1 - frac)), seed=seed,
        )

    def forward(self, coords):
        return self.lo + (self.hi - self.lo) * _torch().sigmoid(self.net(coords))


def build_networks(problem, *, seed: int = 0, width: int = 64, depth: int = 3) -> tuple:
    """The field and rate networks for ``problem`` (identical for both arms at equal ``seed``).

    The field network's output is centred on the data's mean and scaled by its standard
    deviation per channel; the rate network starts at the median of λ's bounds' centre.
    """
    axes = (1,) if problem.ndim == 1 else (0, 1)
    extent = problem.extent_um()
    flat = problem.data.reshape(problem.n_fit, -1)
    field = CoordinateMLP(
        problem.n_fit, extent=extent, axes=axes, width=width, depth=depth,
        n_features=problem.extra.get("n_features", 32),
        feature_scale=problem.extra.get("feature_scale", 2.0),
        out_shift=flat.mean(axis=1).tolist(), out_scale=flat.std(axis=1).tolist(), seed=seed,
    )
    rate = RateMLP(
        problem.lam_bounds, extent=extent, axes=axes,
        feature_scale=problem.extra.get("rate_feature_scale", 1.0),
        init=problem.extra.get("lam_init"), seed=seed + 1,
    )
    return field, rate
