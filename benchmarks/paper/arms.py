"""The two arms of every benchmark: one network and optimiser, two derivative routes.

``autograd``
    The coordinate field network is evaluated at the pixel centres and its derivatives come
    from nested ``create_graph`` autograd (:func:`pipeline.mollifier.autograd_derivatives`):
    the baseline the paper compares against. The data misfit is on the network's value.
``mollifier``
    The same network evaluated on the pixel centres, plus a halo of the mollifier's support
    (a coordinate network can be evaluated past the image), gives a raw field ``ĝ``;
    :class:`pipeline.mollifier.Mollifier` returns the mollified field ``û`` and every
    derivative in one spectral pass, with no recursive autograd, and the halo is cropped (so
    no reflected padding reaches the image). The data misfit is on ``û``.

Everything else is shared: the rate network ``λ(x)`` (bounded), the loss
``mean((u - data)²)/σ² + w mean_interior(R²)/mean(A²)``, Adam and its learning rate.
:class:`ArmState` holds one arm's networks and optimiser and takes a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from pipeline.mollifier import Mollifier, autograd_derivatives

from .nets import build_networks
from .problems import Problem

__all__ = [
    "ALL_ARMS",
    "ARMS",
    "ArmName",
    "ArmState",
    "TrainSettings",
    "derivative_maps",
    "make_arm",
    "pearson",
    "residual_scale",
]

ArmName = Literal["autograd", "mollifier", "deepxde"]
ARMS: tuple[str, ...] = ("autograd", "mollifier")
"""The two arms built here; :data:`ALL_ARMS` adds the outside peer (:mod:`.deepxde_arm`)."""
ALL_ARMS: tuple[str, ...] = get_args(ArmName)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings shared by both arms.

    Attributes
    ----------
    lr
        Adam learning rate (both networks).
    residual_weight
        ``w`` of the residual term (the residual is normalised by ``mean(A²)``, so the term
        reads as a squared error of λ).
    warmup
        Leading iterations on the data misfit alone (no derivatives: both arms do the same
        work there), so that the residual starts from a field that resembles the data.
    width, depth
        Field network size.
    seed
        Seed of both networks (identical initial weights across arms).
    dtype
        ``"float32"`` or ``"float64"``.
    border_px
        Frame left out of the residual and of the correlation with the truth (both arms).
    """

    lr: float = 2e-3
    residual_weight: float = 100.0
    warmup: int = 100
    width: int = 64
    depth: int = 3
    seed: int = 0
    dtype: str = "float32"
    border_px: int = 4
    extra: Mapping[str, Any] = field(default_factory=dict)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (``nan`` when either is constant).

    >>> pearson(np.arange(5.0), 2 * np.arange(5.0) + 1)
    1.0
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _grid_view(t, problem: Problem, pad: int = 0):
    """``(N, C)`` → ``(1, C, *grid)`` (each grid axis ``+ 2 pad``)."""
    return t.T.reshape((1, t.shape[1]) + tuple(n + 2 * pad for n in problem.grid))


def _crop(t, pad: int, ndim: int):
    if pad == 0:
        return t
    return t[(Ellipsis,) + (slice(pad, -pad),) * ndim]


def _append_fixed(d: dict, problem: Problem) -> dict:
    """Append the problem's known constant fields (zero derivatives) as extra channels."""
    if not problem.fixed_values:
        return d
    out = {}
    for name, t in d.items():
        shape = (t.shape[0], len(problem.fixed_values)) + tuple(t.shape[2:])
        if name == "u":
            vals = t.new_tensor(problem.fixed_values).reshape((1, -1) + (1,) * problem.ndim)
            extra = vals.expand(shape)
        else:
            extra = t.new_zeros(shape)
        out[name] = _torch().cat([t, extra], dim=1)
    return out


def _torch():
    import torch

    return torch


def derivative_maps(
    arm: ArmName,
    field_net,
    coords,
    problem: Problem,
    names,
    *,
    mollifier: Mollifier | None = None,
    pad: int = 0,
) -> dict:
    """Derivative maps ``{name: (1, C, *grid)}`` of the field network through ``arm``'s route.

    For the mollifier arm, ``coords`` cover the grid plus ``pad`` pixels on every side (see
    :meth:`Problem.coordinates`) and the maps are cropped back to the grid. The fitted
    channels come from the network; the problem's fixed channels are appended.
    """
    if arm == "autograd":
        d = autograd_derivatives(field_net, coords, names, create_graph=True)
        d = {k: _grid_view(v, problem) for k, v in d.items()}
    elif arm == "mollifier":
        if mollifier is None:
            raise ValueError("the mollifier arm needs its Mollifier layer")
        d = mollifier(_grid_view(field_net(coords), problem, pad))
        d = {k: _crop(v, pad, problem.ndim) for k, v in d.items()}
    else:
        raise ValueError(f"unknown arm {arm!r}; use one of {ARMS}")
    return _append_fixed(d, problem)


def interior_mask(problem: Problem, border: int) -> np.ndarray:
    """Boolean mask of the grid without a ``border``-pixel frame (both arms use the same)."""
    mask = np.zeros(problem.grid, dtype=bool)
    sl = tuple(slice(border, n - border) for n in problem.grid)
    mask[sl] = True
    return mask


def residual_scale(problem: Problem, names, mask: np.ndarray, device, dtype) -> float:
    """``mean(A²)`` over ``mask`` from the mollified data: the residual's normaliser, the same
    for every arm."""
    torch = _torch()
    layer = Mollifier(problem.delta_um, problem.pixel_size_um, names, ndim=problem.ndim)
    data = torch.as_tensor(problem.data[None], dtype=dtype, device=device)
    with torch.no_grad():
        a, _ = problem.model(like=data).linear_terms(_append_fixed(layer(data), problem))
    return float((a[0][torch.as_tensor(mask, device=device)] ** 2).mean()) or 1.0


def make_arm(arm: str, problem: Problem, settings: TrainSettings, device, *,
             names: tuple[str, ...] | None = None):
    """The arm ``arm`` on ``problem``: an :class:`ArmState`, or a
    :class:`~.deepxde_arm.DeepXDEArm` for ``"deepxde"`` (imported only then)."""
    if arm == "deepxde":
        from .deepxde_arm import DeepXDEArm

        return DeepXDEArm(problem, settings, device, names=names)
    return ArmState(arm, problem, settings, device, names=names)


class ArmState:
    """One arm's networks, optimiser and loss on one problem.

    Parameters
    ----------
    arm
        ``"autograd"`` or ``"mollifier"``.
    problem
        The inverse problem.
    settings
        Shared optimisation settings.
    device
        A ``torch.device``.
    names
        Derivative names; default the problem's physics model's.
    """

    def __init__(
        self,
        arm: ArmName,
        problem: Problem,
        settings: TrainSettings,
        device,
        *,
        names: tuple[str, ...] | None = None,
    ) -> None:
        torch = _torch()
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; use one of {ARMS}")
        self.arm, self.problem, self.settings = arm, problem, settings
        dtype = getattr(torch, settings.dtype)
        self.field, self.rate = build_networks(
            problem, seed=settings.seed, width=settings.width, depth=settings.depth
        )
        self.field.to(device=device, dtype=dtype)
        self.rate.to(device=device, dtype=dtype)
        self.coords = torch.as_tensor(problem.coordinates(), dtype=dtype, device=device)
        self.data = torch.as_tensor(problem.data[None], dtype=dtype, device=device)
        self.model = problem.model(like=self.coords)
        self.names = tuple(names) if names is not None else tuple(self.model.derivatives)
        self.mollifier = Mollifier(
            problem.delta_um, problem.pixel_size_um, self.names, ndim=problem.ndim
        )
        self.pad = self.mollifier.support_px if arm == "mollifier" else 0
        self.net_coords = torch.as_tensor(
            problem.coordinates(self.pad), dtype=dtype, device=device
        )
        self.mask_np = interior_mask(problem, settings.border_px)
        self.mask = torch.as_tensor(self.mask_np, device=device)
        self.a_scale = residual_scale(problem, self.names, self.mask_np, device, dtype)
        self.sigma2 = max(problem.noise_sigma, 1e-6 * float(problem.data.std())) ** 2
        params = list(self.field.parameters()) + list(self.rate.parameters())
        self.optimizer = torch.optim.Adam(params, lr=settings.lr)
        self.iteration = 0

    def loss(self, *, with_residual: bool = True):
        """The loss and its parts ``{"data": ..., "residual": ...}`` (floats)."""
        if not with_residual:
            g = _grid_view(self.field(self.net_coords), self.problem, self.pad)
            u = _crop(self.mollifier(g)["u"], self.pad, self.problem.ndim) if self.pad else g
            data = ((u - self.data) ** 2).mean() / self.sigma2
            return data, {"data": data.item(), "residual": float("nan")}
        d = derivative_maps(
            self.arm, self.field, self.net_coords, self.problem, self.names,
            mollifier=self.mollifier, pad=self.pad,
        )
        n_fit = self.problem.n_fit
        data = ((d["u"][:, :n_fit] - self.data) ** 2).mean() / self.sigma2
        lam = _grid_view(self.rate(self.coords), self.problem)[:, 0]
        a, b = self.model.linear_terms(d)
        res = ((a * lam - b)[:, self.mask] ** 2).mean() / self.a_scale
        total = data + self.settings.residual_weight * res
        return total, {"data": data.item(), "residual": res.item()}

    def step(self) -> dict[str, float]:
        """One Adam step (data-only during warm-up); returns the loss parts."""
        warm = self.iteration < self.settings.warmup
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = self.loss(with_residual=not warm)
        total.backward()
        self.optimizer.step()
        self.iteration += 1
        parts["loss"] = total.item()
        return parts

    def lam(self) -> np.ndarray:
        """The current λ on the grid (NumPy, float64)."""
        torch = _torch()
        with torch.no_grad():
            lam = self.rate(self.coords)[:, 0].reshape(self.problem.grid)
        return lam.detach().cpu().double().numpy()

    def r(self) -> float:
        """Pearson r of the current λ with the truth on the interior."""
        return pearson(self.lam()[self.mask_np], self.problem.lam_true[self.mask_np])
