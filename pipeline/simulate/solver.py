"""Forward solver: steady states of the chromatin model on a periodic grid (docs/science.md §1, §6).

With ``c = 1 - φ_w``, ``φ_h = (c + φ_d)/2`` and ``φ_e = (c - φ_d)/2``::

    μ_d = -φ_e + g(φ_h) - l² ∇²φ_d,        g(φ) = φ (φ_max - φ)(φ_max - 2φ)
    ∂_t φ_d = R = ∇²μ_d + 2(λ φ_e - φ_h)

Semi-implicit spectral stepping. Writing ``R = F(φ_d)`` and a linear operator
``L = -l²∇⁴ + S∇² - a`` (``S`` bounds the effective diffusivity ``½(1 + g'(φ_h))`` and ``a``
is the mean reaction rate ``mean(λ) + 1``), one step is

    (1 - dt L) φ^{n+1} = φ^n + dt (F(φ^n) - L φ^n),  i.e.  φ̂^{n+1} = φ̂^n + dt R̂^n / (1 + dt Λ(k))

with ``Λ(k) = l²k⁴ + S k² + a > 0``. The stabilising terms cancel at a fixed point, which is
therefore exactly ``R = 0``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from scipy import fft as sfft

from ._grid import wavenumbers

__all__ = [
    "INTERFACE_LENGTH_UM",
    "PHI_MAX",
    "SteadyStateNotConverged",
    "g",
    "g_prime",
    "g_second",
    "local_equilibrium",
    "steady_state_residual",
    "solve_steady_state",
]

PHI_MAX = 0.7
"""The truth's maximal packing fraction φ_max (the simulator's own: the ground truth does not
move with the settings' defaults)."""
INTERFACE_LENGTH_UM = 0.03
"""The truth's interface length l in µm."""

log = logging.getLogger(__name__)


class SteadyStateNotConverged(RuntimeError):
    """The forward solver did not reach the requested residual."""


# The generator's own nonlinearity, written as the expanded polynomial. It deliberately does
# not import the inverse model (pipeline.physics): ground truth made with the estimator's own
# code could hide a mistake shared by both. tests/test_stress.py checks the two agree.


def g(phi: np.ndarray | float, phi_max: float) -> np.ndarray | float:
    """``g(φ) = 2φ³ - 3 φ_max φ² + φ_max² φ`` (the double-well-type term of μ_d).

    >>> round(float(g(0.35, 0.7)), 12), round(float(g(0.7, 0.7)), 12)
    (0.0, 0.0)
    """
    return ((2.0 * phi - 3.0 * phi_max) * phi + phi_max * phi_max) * phi


def g_prime(phi: np.ndarray | float, phi_max: float) -> np.ndarray | float:
    """``g'(φ) = 6φ² - 6 φ_max φ + φ_max²``.

    >>> round(float(g_prime(0.0, 0.7)), 12)
    0.49
    """
    return 6.0 * phi * (phi - phi_max) + phi_max * phi_max


def g_second(phi: np.ndarray | float, phi_max: float) -> np.ndarray | float:
    """``g''(φ) = 12φ - 6 φ_max``.

    >>> round(float(g_second(0.35, 0.7)), 12)
    0.0
    """
    return 6.0 * (2.0 * phi - phi_max)


def local_equilibrium(lam: np.ndarray, phi_w: np.ndarray | float) -> np.ndarray:
    """φ_d where the reaction balances pointwise: ``φ_h / φ_e = λ``, i.e. ``φ_d = c (λ-1)/(λ+1)``.

    >>> float(local_equilibrium(np.array(3.0), 0.3))
    0.35
    """
    c = 1.0 - np.asarray(phi_w, dtype=float)
    return c * (lam - 1.0) / (lam + 1.0)


def _prepare(lam: np.ndarray, phi_w: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    lam = np.asarray(lam, dtype=float)
    if lam.ndim != 2:
        raise ValueError(f"lam must be a 2-D map, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or lam.min() <= 0:
        raise ValueError("lam must be finite and positive everywhere")
    c = np.broadcast_to(1.0 - np.asarray(phi_w, dtype=float), lam.shape).copy()
    return lam, c


def _local_potential(phi_d: np.ndarray, c: np.ndarray, phi_max: float) -> np.ndarray:
    """``-φ_e + g(φ_h)``: the chemical potential without its gradient term."""
    return -(c - phi_d) / 2 + g((c + phi_d) / 2, phi_max)


def steady_state_residual(
    phi_d: np.ndarray,
    lam: np.ndarray,
    phi_w: np.ndarray | float,
    *,
    pixel_size_um: float,
    phi_max: float = PHI_MAX,
    interface_length_um: float = INTERFACE_LENGTH_UM,
) -> np.ndarray:
    """The residual ``R = ∇²μ_d + 2(λ φ_e - φ_h)`` with exact spectral derivatives (periodic).

    Parameters
    ----------
    phi_d, lam : ndarray (Y, X)
        Order parameter and rate ratio.
    phi_w : ndarray (Y, X) or float
        Nucleoplasm fraction.
    pixel_size_um, phi_max, interface_length_um : float
        Grid spacing (µm) and model constants.

    Examples
    --------
    >>> lam = np.full((16, 16), 2.0)
    >>> pd = local_equilibrium(lam, 0.3)
    >>> float(abs(steady_state_residual(pd, lam, 0.3, pixel_size_um=0.02)).max()) < 1e-12
    True
    """
    lam, c = _prepare(lam, phi_w)
    phi_d = np.asarray(phi_d, dtype=float)
    ky, kx = wavenumbers(phi_d.shape, pixel_size_um)
    k2 = ky**2 + kx**2
    mu_hat = sfft.rfft2(_local_potential(phi_d, c, phi_max))
    mu_hat += interface_length_um**2 * k2 * sfft.rfft2(phi_d)  # -l² ∇²φ_d
    lap_mu = sfft.irfft2(-k2 * mu_hat, s=phi_d.shape)
    return lap_mu + lam * (c - phi_d) - (c + phi_d)


def solve_steady_state(
    lam: np.ndarray,
    phi_w: np.ndarray | float,
    *,
    pixel_size_um: float,
    phi_max: float = PHI_MAX,
    interface_length_um: float = INTERFACE_LENGTH_UM,
    dt: float = 0.05,
    tol: float = 1e-6,
    max_steps: int = 20000,
    stabilizer: float | None = None,
    phi_d0: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Steady state φ_d of the chromatin model for a given λ(x) and φ_w(x).

    Parameters
    ----------
    lam : ndarray (Y, X)
        Rate ratio λ > 0.
    phi_w : ndarray (Y, X) or float
        Nucleoplasm fraction (``1 - phi_max`` for the single-channel model).
    pixel_size_um : float
        Grid spacing in µm; the grid is periodic.
    phi_max, interface_length_um : float
        Model constants (``l`` in µm).
    dt : float
        Time step of the semi-implicit scheme.
    tol : float
        Stop when ``max |R| < tol`` (spectral residual, see :func:`steady_state_residual`).
    max_steps : int
        Raise :class:`SteadyStateNotConverged` after this many steps.
    stabilizer : float, optional
        ``S`` of the implicit ``S∇²``; default the largest effective diffusivity
        ``½(1 + g'(φ_h))`` over the start and ``φ_h ∈ [0, φ_max]``.
    phi_d0 : ndarray, optional
        Start; default the local reaction equilibrium ``φ_h / φ_e = λ``.

    Returns
    -------
    phi_d : ndarray (Y, X)
    info : dict
        ``steps``, ``residual_max``, ``time_s``, ``dt``, ``stabilizer``, ``reaction_implicit``,
        ``converged`` and ``residual_history`` (``[step, max|R|]`` every 50 steps).

    Examples
    --------
    >>> from pipeline.simulate.fields import smooth_lambda
    >>> lam = smooth_lambda((32, 32), pixel_size_um=0.02, rng=0)
    >>> phi_d, info = solve_steady_state(lam, 0.3, pixel_size_um=0.02)
    >>> info["residual_max"] < 1e-6
    True
    """
    t0 = time.perf_counter()
    lam, c = _prepare(lam, phi_w)
    shape = lam.shape
    phi = local_equilibrium(lam, 1.0 - c) if phi_d0 is None else np.array(phi_d0, dtype=float)
    if phi.shape != shape:
        raise ValueError(f"phi_d0 has shape {phi.shape}, expected {shape}")
    if stabilizer is None:
        d_start = 0.5 * (1.0 + g_prime((c + phi) / 2, phi_max)).max()
        stabilizer = float(max(d_start, 0.5 * (1.0 + phi_max**2)))
    a = float(lam.mean() + 1.0)
    l2 = interface_length_um**2
    ky, kx = wavenumbers(shape, pixel_size_um)
    k2 = ky**2 + kx**2
    gain = dt / (1.0 + dt * (l2 * k2**2 + stabilizer * k2 + a))
    source = (lam - 1.0) * c  # 2(λφ_e - φ_h) = (λ-1)c - (λ+1)φ_d
    decay = lam + 1.0

    phi_hat = sfft.rfft2(phi)
    history: list[list[float]] = []
    rmax = np.inf
    step = 0
    while True:
        both = sfft.rfft2(np.stack([_local_potential(phi, c, phi_max), source - decay * phi]))
        r_hat = -k2 * both[0] - l2 * k2**2 * phi_hat + both[1]
        rmax = float(np.abs(sfft.irfft2(r_hat, s=shape)).max())
        if step % 50 == 0:
            history.append([step, rmax])
            log.debug("step %d: max|R| = %.3e", step, rmax)
        if not np.isfinite(rmax):
            raise SteadyStateNotConverged(
                f"the steady-state solver diverged at step {step} (dt={dt}, S={stabilizer:.3g}); "
                "lower dt or raise the stabilizer"
            )
        if rmax < tol:
            break
        if step >= max_steps:
            raise SteadyStateNotConverged(
                f"no steady state after {max_steps} steps: max|R| = {rmax:.3e} > tol = {tol:.1e} "
                f"(dt={dt}, S={stabilizer:.3g}); raise max_steps or dt, or loosen tol"
            )
        phi_hat = phi_hat + gain * r_hat
        phi = sfft.irfft2(phi_hat, s=shape)
        step += 1
    history.append([step, rmax])
    info = {
        "steps": step,
        "residual_max": rmax,
        "time_s": time.perf_counter() - t0,
        "dt": dt,
        "tol": tol,
        "stabilizer": stabilizer,
        "reaction_implicit": a,
        "converged": True,
        "residual_history": history,
    }
    log.info("steady state: %d steps, max|R| = %.2e, %.2f s", step, rmax, info["time_s"])
    return phi, info
