"""The paper's three inverse problems with a known truth λ.

=====  ==========================================  ==========  =============
order  problem                                     grid        unknown
=====  ==========================================  ==========  =============
1      Langevin-type ``u_t = u + λ(t)``            1-D, T      ``λ(t)``
2      steady heat ``0 = λ(x, y) ∇²u + m(x, y)``   2-D, N×N    ``λ(x, y)``
4      chromatin steady state                      2-D, N×N    ``λ(x, y)``
=====  ==========================================  ==========  =============

Each builder returns a :class:`Problem`: the noisy observations of the fields a network has to
fit, the clean fields, the true λ, the physics model and the settings both arms share (the
mollifier radius, the bounds of λ). Known constant fields (the nucleoplasm fraction ``φ_w`` of
the single-channel chromatin model) are carried as ``fixed_values`` and appended to the
network's output with zero derivatives.

The Langevin and heat cases are analytic: ``u`` and ``λ`` are chosen, then the remaining term
(``λ = u_t - u``; ``m = -λ ∇²u``) follows exactly. The chromatin case is a steady state of the
model computed here with a small semi-implicit spectral solver on a periodic grid (the same
scheme as the product's simulator, kept local so that the benchmark does not move when the
simulator does).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from pipeline.physics import ChromatinModel, HeatModel, LangevinModel

__all__ = [
    "ProblemName",
    "PROBLEMS",
    "Problem",
    "langevin_problem",
    "heat_problem",
    "chromatin_problem",
    "chromatin_steady_state",
    "DerivativeProbe",
    "probe_problem",
    "make_problem",
]

log = logging.getLogger(__name__)

ProblemName = Literal["langevin", "heat", "chromatin"]
PROBLEMS: tuple[str, ...] = get_args(ProblemName)


@dataclass
class Problem:
    """An inverse problem with a known truth.

    Attributes
    ----------
    name, order
        Problem name and the highest derivative order of its residual.
    ndim
        1 (a trajectory ``(C, T)``) or 2 (images ``(C, H, W)``).
    pixel_size_um
        Grid spacing (µm, or time units for the 1-D case).
    data, clean
        Noisy and clean observations of the fitted fields, ``(C, *grid)`` float64.
    lam_true
        The truth, shape ``grid``.
    noise_sigma
        Standard deviation of the additive Gaussian noise on ``data``.
    delta_um
        Mollifier radius of the mollifier arm.
    lam_bounds
        ``(lo, hi)`` of the bounded rate network, shared by both arms.
    fixed_values
        Known constant fields appended after the fitted ones (their derivatives are zero).
    source
        The known source ``m`` of the heat problem, shape ``grid``.
    """

    name: str
    order: int
    ndim: int
    pixel_size_um: float
    data: np.ndarray
    clean: np.ndarray
    lam_true: np.ndarray
    noise_sigma: float
    delta_um: float
    lam_bounds: tuple[float, float]
    fixed_values: tuple[float, ...] = ()
    source: np.ndarray | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def grid(self) -> tuple[int, ...]:
        """Grid shape (``(T,)`` or ``(H, W)``)."""
        return tuple(self.data.shape[1:])

    @property
    def n_fit(self) -> int:
        """Number of fitted field channels."""
        return int(self.data.shape[0])

    def model(self, like: Any = None) -> Any:
        """The physics model; the heat source becomes a tensor on ``like``'s device."""
        if self.name == "langevin":
            return LangevinModel()
        if self.name == "heat":
            import torch

            src = torch.as_tensor(self.source)
            if like is not None:
                src = src.to(device=like.device, dtype=like.dtype)
            return HeatModel(source=src)
        if self.name == "chromatin":
            # the expanded (chain-rule) form reads only the derivatives of (phi_h, phi_w), so
            # both arms differentiate the same two channels
            return ChromatinModel(**{"form": "expanded", **self.extra.get("model_kwargs", {})})
        if self.name == "probe":
            return DerivativeProbe(self.order)
        raise ValueError(f"unknown problem {self.name!r}")

    def coordinates(self, pad: int = 0) -> np.ndarray:
        """Pixel-centre coordinates ``(N, 2)`` ordered ``(y, x)`` in µm (``y = 0`` in 1-D).

        ``pad`` extends the grid by that many pixels on every side (a coordinate network can
        be evaluated there: the mollifier arm's halo).
        """
        h = self.pixel_size_um
        axes = [np.arange(-pad, n + pad) * h for n in self.grid]
        if self.ndim == 1:
            return np.stack([np.zeros_like(axes[0]), axes[0]], axis=1)
        yy, xx = np.meshgrid(axes[0], axes[1], indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1)

    def extent_um(self) -> tuple[float, float]:
        """Physical size along ``(y, x)`` (``y`` is 0 in 1-D), used to scale network inputs."""
        h = self.pixel_size_um
        if self.ndim == 1:
            return (1.0, (self.grid[0] - 1) * h)
        return ((self.grid[0] - 1) * h, (self.grid[1] - 1) * h)


def _noisy(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return clean + sigma * rng.standard_normal(clean.shape)


# --------------------------------------------------------------------------- order 1
def langevin_problem(
    n: int = 1024, *, noise: float = 0.02, seed: int = 0, duration: float = 4.0
) -> Problem:
    """``u_t = u + λ(t)`` from a noisy trajectory of ``n`` samples over ``duration``.

    ``u(t) = Σ a_j sin(ω_j t + p_j)`` with a few random smooth modes; ``λ = u_t - u`` exactly.
    ``noise`` is relative to the standard deviation of ``u``.

    >>> p = langevin_problem(64)
    >>> p.data.shape, p.order
    ((1, 64), 1)
    """
    rng = np.random.default_rng(seed)
    h = duration / (n - 1)
    t = np.arange(n) * h
    omegas = np.array([0.8, 1.7, 2.9])
    amps = np.array([1.0, 0.6, 0.35])
    phases = rng.uniform(0, 2 * np.pi, size=3)
    u = sum(a * np.sin(w * t + p) for a, w, p in zip(amps, omegas, phases, strict=True))
    ut = sum(a * w * np.cos(w * t + p) for a, w, p in zip(amps, omegas, phases, strict=True))
    lam = ut - u
    sigma = noise * float(u.std())
    clean = u[None]
    span = float(np.abs(lam).max())
    return Problem(
        name="langevin", order=1, ndim=1, pixel_size_um=h, data=_noisy(clean, sigma, rng),
        clean=clean, lam_true=lam, noise_sigma=sigma, delta_um=8 * h,
        lam_bounds=(-1.5 * span, 1.5 * span),
    )


# --------------------------------------------------------------------------- order 2
def heat_problem(n: int = 64, *, noise: float = 0.02, seed: int = 0) -> Problem:
    """``0 = λ ∇²u + m`` on the unit square (``n`` × ``n`` pixels) with a known source.

    ``u = e^{a(x-x0)} + e^{b(y-y0)} + c e^{(x+y-1)}``, a smooth field whose Laplacian
    ``a² e^{a(x-x0)} + b² e^{b(y-y0)} + 2c e^{(x+y-1)}`` is positive everywhere (λ is
    identifiable at every pixel) and varies several-fold; ``λ = 1 + 0.4 sin(πx + r)
    cos(1.5πy + s)`` and ``m = -λ ∇²u``. ``noise`` is relative to the standard deviation of ``u``.

    >>> heat_problem(16).lam_true.shape
    (16, 16)
    """
    rng = np.random.default_rng(seed)
    h = 1.0 / (n - 1)
    yy, xx = np.meshgrid(np.arange(n) * h, np.arange(n) * h, indexing="ij")
    x0, y0 = rng.uniform(0.3, 0.7, size=2)
    r, s = rng.uniform(0, 2 * np.pi, size=2)
    a, b, c = 2.0, 1.5, 0.3
    ex, ey, exy = np.exp(a * (xx - x0)), np.exp(b * (yy - y0)), np.exp(xx + yy - 1)
    u = ex + ey + c * exy
    lap = a**2 * ex + b**2 * ey + 2 * c * exy
    lam = 1 + 0.4 * np.sin(np.pi * xx + r) * np.cos(1.5 * np.pi * yy + s)
    sigma = noise * float(u.std())
    clean = u[None]
    return Problem(
        name="heat", order=2, ndim=2, pixel_size_um=h, data=_noisy(clean, sigma, rng),
        clean=clean, lam_true=lam, noise_sigma=sigma, delta_um=6 * h, lam_bounds=(0.1, 3.0),
        source=-lam * lap, extra={"feature_scale": 1.0, "rate_feature_scale": 0.5},
    )


# --------------------------------------------------------------------------- order 4
def _smooth_periodic_lambda(
    n: int, rng: np.random.Generator, *, lam_min: float = 0.4, lam_max: float = 2.5
) -> np.ndarray:
    """A smooth periodic λ from grid harmonics 1-2, squashed into ``[lam_min, lam_max]``."""
    j = np.arange(n) / n
    yy, xx = np.meshgrid(j, j, indexing="ij")
    z = np.zeros((n, n))
    for ky, kx in ((1, 0), (0, 1), (1, 1), (1, -1), (2, 1)):
        a = rng.normal() / math.hypot(ky, kx)
        z += a * np.cos(2 * np.pi * (ky * yy + kx * xx) + rng.uniform(0, 2 * np.pi))
    z = (z - z.mean()) / z.std()
    mid = math.sqrt(lam_min * lam_max)
    half = 0.5 * math.log(lam_max / lam_min)
    return mid * np.exp(half * np.tanh(0.7 * z))


def chromatin_steady_state(
    lam: np.ndarray,
    *,
    pixel_size_um: float,
    phi_w: float = 0.3,
    phi_max: float = 0.7,
    interface_length_um: float = 0.03,
    dt: float = 0.05,
    tol: float = 1e-8,
    max_steps: int = 20000,
) -> np.ndarray:
    """Steady state ``φ_d`` of the chromatin model with constant ``φ_w`` (periodic grid).

    Semi-implicit spectral steps ``φ̂ += dt R̂ / (1 + dt (l²k⁴ + S k² + a))`` until
    ``max|R| < tol``; the stabilising terms cancel at the fixed point, which is exactly ``R = 0``.

    >>> lam = np.full((16, 16), 2.0)
    >>> pd = chromatin_steady_state(lam, pixel_size_um=0.02)
    >>> round(float(pd.mean()), 6)   # local equilibrium c (λ-1)/(λ+1)
    0.233333
    """
    from scipy import fft as sfft

    c = 1.0 - phi_w
    ky = 2 * np.pi * sfft.fftfreq(lam.shape[0], d=pixel_size_um)[:, None]
    kx = 2 * np.pi * sfft.rfftfreq(lam.shape[1], d=pixel_size_um)[None, :]
    k2 = ky**2 + kx**2
    l2 = interface_length_um**2
    stab = 0.5 * (1 + phi_max**2)
    gain = dt / (1 + dt * (l2 * k2**2 + stab * k2 + float(lam.mean()) + 1))

    def g(p: np.ndarray) -> np.ndarray:
        return p * (phi_max - p) * (phi_max - 2 * p)

    phi = c * (lam - 1) / (lam + 1)
    phi_hat = sfft.rfft2(phi)
    for step in range(max_steps + 1):
        pot = -(c - phi) / 2 + g((c + phi) / 2)
        r_hat = -k2 * sfft.rfft2(pot) - l2 * k2**2 * phi_hat
        r_hat += sfft.rfft2((lam - 1) * c - (lam + 1) * phi)
        rmax = float(np.abs(sfft.irfft2(r_hat, s=lam.shape)).max())
        if rmax < tol:
            log.debug("chromatin steady state: %d steps, max|R| = %.2e", step, rmax)
            return phi
        if not np.isfinite(rmax):
            break
        phi_hat = phi_hat + gain * r_hat
        phi = sfft.irfft2(phi_hat, s=lam.shape)
    raise RuntimeError(f"no chromatin steady state: max|R| = {rmax:.3e} after {step} steps")


def chromatin_problem(
    n: int = 64,
    *,
    noise: float = 0.02,
    seed: int = 0,
    pixel_size_um: float = 0.02,
    phi_max: float = 0.7,
    interface_length_um: float = 0.03,
) -> Problem:
    """The fourth-order chromatin model, single-channel (``φ_w = 1 - φ_max`` known).

    ``λ`` is a smooth periodic map in ``[0.4, 2.5]``; ``φ_h = (c + φ_d)/2`` comes from the
    steady state. ``noise`` is relative to the standard deviation of ``φ_h``.

    >>> p = chromatin_problem(32)
    >>> p.data.shape, p.fixed_values
    ((1, 32, 32), (0.3,))
    """
    rng = np.random.default_rng(seed)
    lam = _smooth_periodic_lambda(n, rng)
    phi_w = round(1.0 - phi_max, 12)
    phi_d = chromatin_steady_state(
        lam, pixel_size_um=pixel_size_um, phi_w=phi_w, phi_max=phi_max,
        interface_length_um=interface_length_um,
    )
    phi_h = (1 - phi_w + phi_d) / 2
    clean = phi_h[None]
    sigma = noise * float(phi_h.std())
    return Problem(
        name="chromatin", order=4, ndim=2, pixel_size_um=pixel_size_um,
        data=_noisy(clean, sigma, rng), clean=clean, lam_true=lam, noise_sigma=sigma,
        delta_um=4 * pixel_size_um, lam_bounds=(0.1, 5.0), fixed_values=(phi_w,),
        extra={"model_kwargs": {"phi_max": phi_max, "interface_length_um": interface_length_um}},
    )


_PROBE_NAMES = {1: ("u", "x", "y"), 2: ("u", "x", "y", "lap"), 4: ("u", "x", "y", "lap", "bilap")}


@dataclass(frozen=True)
class DerivativeProbe:
    """A cost probe for the derivative-order scaling: ``R = λ - Σ_names d[name]``.

    It asks for every derivative up to ``order`` (1: value and gradient; 2: plus the
    Laplacian; 4: plus the biharmonic), so that the cost of the route is measured with
    the same network and loss at each order. It is not a physical model.

    >>> import numpy as np
    >>> d = {k: np.ones((1, 2, 2)) for k in ("u", "x", "y")}
    >>> A, B = DerivativeProbe(1).linear_terms(d)
    >>> float(B[0, 0])
    3.0
    """

    order: int = 4
    name: str = "probe"
    fields: tuple[str, ...] = ("u",)

    @property
    def derivatives(self) -> tuple[str, ...]:
        try:
            return _PROBE_NAMES[self.order]
        except KeyError:
            raise ValueError(f"probe order must be 1, 2 or 4, got {self.order!r}") from None

    def linear_terms(self, d: Mapping[str, Any]) -> tuple[Any, Any]:
        b = sum(d[name][..., 0, :, :] for name in self.derivatives)
        return 1 + 0 * b, b


def probe_problem(n: int = 64, *, order: int = 4, noise: float = 0.02, seed: int = 0) -> Problem:
    """The heat problem's field with the :class:`DerivativeProbe` of ``order`` as its model.

    >>> probe_problem(16, order=2).model().derivatives
    ('u', 'x', 'y', 'lap')
    """
    base = heat_problem(n, noise=noise, seed=seed)
    return Problem(
        name="probe", order=int(order), ndim=2, pixel_size_um=base.pixel_size_um,
        data=base.data, clean=base.clean, lam_true=base.lam_true, noise_sigma=base.noise_sigma,
        delta_um=base.delta_um, lam_bounds=(-1e3, 1e3),
    )


def make_problem(
    name: ProblemName, n: int, *, noise: float, seed: int = 0, **options: Any
) -> Problem:
    """Build the problem ``name`` on a grid of ``n`` (pixels per side, or samples in 1-D).

    ``noise`` is relative to the standard deviation of the clean field; ``options`` go to the
    builder (e.g. ``pixel_size_um`` of the chromatin case).

    >>> make_problem("heat", 16, noise=0.1).noise_sigma > 0
    True
    """
    builders = {
        "langevin": langevin_problem,
        "heat": heat_problem,
        "chromatin": chromatin_problem,
        "probe": probe_problem,
    }
    try:
        builder = builders[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; use one of {PROBLEMS}") from None
    return builder(n, noise=noise, seed=seed, **options)
