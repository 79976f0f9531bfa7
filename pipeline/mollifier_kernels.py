"""The mollifier's kernels: Friedrichs' bump on the grid, its transfer function, derivative
names, and the corrected finite-difference stencils (:mod:`pipeline.mollifier` uses them; see its
text for the definitions every backend shares).

>>> k = bump_kernel(0.06, 0.02)
>>> k.shape, round(float(k.sum()), 12)
((5, 5), 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np

__all__ = [
    "MAX_ORDER",
    "bump_kernel",
    "direct_kernels",
    "fd_weights",
    "kernel_transfer",
    "parse_derivative",
]

MAX_ORDER = 4
def bump_kernel(delta_um: float, pixel_size_um: float, *, ndim: int = 2) -> np.ndarray:
    """Friedrichs' bump of radius ``delta_um`` sampled on a grid of ``pixel_size_um``.

    Returns a float64 array of odd shape ``(2R+1, 2R+1)`` (or ``(2R+1,)`` for ``ndim=1``),
    normalised to unit sum.

    >>> k = bump_kernel(0.1, 0.025)
    >>> k.shape, round(float(k.sum()), 12)
    ((7, 7), 1.0)
    """
    if not (delta_um > 0 and pixel_size_um > 0):
        raise ValueError(f"delta ({delta_um}) and pixel size ({pixel_size_um}) must be positive")
    radius_px = delta_um / pixel_size_um
    if radius_px < 1.0:
        raise ValueError(
            f"mollifier radius {delta_um} um is {radius_px:.2f} px; it must span at least "
            "one pixel (choose a larger delta)"
        )
    half = int(math.ceil(radius_px)) - (1 if float(radius_px).is_integer() else 0)
    j = np.arange(-half, half + 1, dtype=np.float64)
    r2 = (j[:, None] ** 2 + j[None, :] ** 2) / radius_px**2 if ndim == 2 else j**2 / radius_px**2
    with np.errstate(divide="ignore", over="ignore"):
        k = np.where(r2 < 1.0, np.exp(-1.0 / (1.0 - np.minimum(r2, 1 - 1e-300))), 0.0)
    return k / k.sum()


def kernel_transfer(kernel: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Discrete-time Fourier transform of a centred, even kernel at wavenumbers in rad/px.

    ``ky`` and ``kx`` broadcast against each other.
    """
    half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    jy = np.arange(-half_y, half_y + 1, dtype=np.float64)
    jx = np.arange(-half_x, half_x + 1, dtype=np.float64)
    ky = np.asarray(ky, dtype=np.float64)
    kx = np.asarray(kx, dtype=np.float64)
    cy = np.cos(np.multiply.outer(ky, jy))  # (..., Jy)
    cx = np.cos(np.multiply.outer(kx, jx))  # (..., Jx)
    # the kernel is even in each axis, so the transform is real: sum_j k[j] cos(ky jy) cos(kx jx)
    if ky.shape == (ky.size, 1) and kx.shape == (1, kx.size):  # a grid: two matrix products
        return cy[:, 0, :] @ kernel @ cx[0].T
    return np.einsum("...a,ab,...b->...", cy, kernel, cx)


# --------------------------------------------------------------------------- names
@cache
def parse_derivative(name: str) -> tuple[tuple[float, tuple[int, int]], ...]:
    """Expand a derivative name into ``((coefficient, (order_y, order_x)), ...)``.

    >>> parse_derivative("lap")
    ((1.0, (0, 2)), (1.0, (2, 0)))
    """
    if name == "u":
        return ((1.0, (0, 0)),)
    if name == "lap":
        return ((1.0, (0, 2)), (1.0, (2, 0)))
    if name == "bilap":
        return ((1.0, (0, 4)), (2.0, (2, 2)), (1.0, (4, 0)))
    if name and set(name) <= {"x", "y"} and len(name) <= MAX_ORDER:
        return ((1.0, (name.count("y"), name.count("x"))),)
    raise ValueError(
        f"unknown derivative {name!r}: use 'u', 'lap', 'bilap' or a string of x/y letters "
        f"of length <= {MAX_ORDER}"
    )


def _order(name: str) -> int:
    return max(ny + nx for _, (ny, nx) in parse_derivative(name))


# --------------------------------------------------------------------------- direct kernels
@cache
def fd_weights(order: int, half_width: int) -> np.ndarray:
    """Centred finite-difference weights for ``d^order/dx^order`` on ``-m..m`` (unit spacing).

    The weights solve the discrete moment conditions
    ``sum_j w_j j^p / p! = [p == order]`` for ``p = 0..2m``, so the stencil is exact on
    polynomials of degree ``<= 2m``.

    >>> fd_weights(2, 1).tolist()
    [1.0, -2.0, 1.0]
    """
    m = half_width
    if order > 2 * m:
        raise ValueError(f"a stencil of half-width {m} cannot take a derivative of order {order}")
    j = np.arange(-m, m + 1, dtype=np.float64)
    p = np.arange(0, 2 * m + 1)
    vander = j[None, :] ** p[:, None] / np.array([math.factorial(int(q)) for q in p])[:, None]
    rhs = (p == order).astype(np.float64)
    w = np.linalg.solve(vander, rhs)
    w[np.abs(w) < 1e-13 * np.abs(w).max()] = 0.0
    return w


def direct_kernels(
    delta_um: float,
    pixel_size_um: float,
    derivatives: Sequence[str],
    *,
    stencil_half_width: int = 6,
    ndim: int = 2,
) -> np.ndarray:
    """Real-space kernels for each derivative, shape ``(D, K, K)`` float64 (``(D, 1, K)`` for
    ``ndim=1``), in units of 1/um^order.

    Each kernel is ``eta_d * (D_ny (x) D_nx)`` scaled by ``pixel_size ** -order``. Apply them as
    a true convolution (flip for ``torch.nn.functional.conv2d``, which correlates).
    """
    from scipy.signal import convolve2d

    eta = bump_kernel(delta_um, pixel_size_um, ndim=ndim)
    eta = eta if ndim == 2 else eta[None, :]
    m = stencil_half_width
    out = []
    for name in derivatives:
        total = None
        for coef, (ny, nx) in parse_derivative(name):
            # fd_weights are correlation weights; a convolution kernel is their mirror image
            sy = fd_weights(ny, m)[::-1] if ndim == 2 else np.ones(1)
            sx = fd_weights(nx, m)[::-1]
            stencil = np.outer(sy, sx) * coef / pixel_size_um ** (ny + nx)
            k = convolve2d(eta, stencil, mode="full")
            total = k if total is None else total + k
        out.append(total)
    return np.stack(out)


# --------------------------------------------------------------------------- the layer
def _fast_len(n: int) -> int:
    from scipy.fft import next_fast_len

    return next_fast_len(n, real=True)
