"""The mollifier layer: derivatives of orders 0-4 of a mollified field in one pass.

A network (or an image) gives a raw field ``g`` on the pixel grid. The layer returns
``u = eta_delta * g`` and every derivative a residual asks for, ``d^a u = (d^a eta_delta) * g``,
without recursive autograd.

Definition used by every backend
--------------------------------
``eta_d`` is Friedrichs' bump ``exp(-1 / (1 - r^2))`` on ``r < 1``, scaled to radius ``delta``
(micrometres) and sampled on the grid, normalised to unit sum. The mollified field is the
discrete convolution ``eta_d * g`` read as a band-limited function, so a derivative of
multi-index ``a`` has the transfer function ``(i k)^a * eta_hat(k)``, where ``eta_hat`` is the
discrete-time Fourier transform of ``eta_d`` (:func:`kernel_transfer`). A sinusoid of wave
vector ``k`` therefore comes out as ``eta_hat(k) * d^a sin(k.x)``: this is the "known transfer
function" the tests allow for.

Sampling the analytic derivatives of the bump on the grid is *not* used: at small radii it is
badly wrong (docs/science.md section 3). The backends are

``spectral``
    reflect-pad the tile, FFT, multiply by ``eta_hat(k)`` times the symbol of the corrected
    stencil below (or by ``(i k)^a`` with ``symbol="exact"`` for periodic tiles), inverse FFT,
    crop.
``direct``
    real-space kernels ``eta_d * D_a``, where ``D_a`` is a centred finite-difference stencil
    whose weights satisfy the discrete moment conditions (exact on polynomials up to degree
    ``2 * stencil_half_width``); one multi-channel convolution.
``autograd``
    :func:`autograd_derivatives` for coordinate networks, by nested ``create_graph`` autograd
    (used by the benchmarks as the baseline the paper compares against).

Derivative names: ``"u"`` (the mollified value), any string of ``x``/``y`` letters
(``"x"``, ``"yy"``, ``"xxyy"``; order up to 4), ``"lap"`` and ``"bilap"``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np

from .mollifier_kernels import (
    _fast_len,
    bump_kernel,
    direct_kernels,
    fd_weights,
    kernel_transfer,
    parse_derivative,
)

__all__ = [
    "Backend",
    "bump_kernel",
    "kernel_transfer",
    "parse_derivative",
    "fd_weights",
    "direct_kernels",
    "Mollifier",
    "mollify",
    "autograd_derivatives",
]

log = logging.getLogger(__name__)

Backend = Literal["spectral", "direct"]
Symbol = Literal["stencil", "exact"]
SPECTRAL_CHUNK_BYTES = 32 * 2**20
"""Target size of the spectral backend's transient (the spectra of the derivative maps of
the fields transformed together); a batch is transformed in chunks of this size, which gives
the same maps as one pass."""



@functools.lru_cache(maxsize=4)
def _spectral_multipliers(spec: tuple, shape: tuple[int, int]) -> np.ndarray:
    """``(D, ny, nx // 2 + 1)`` complex128 multipliers of the spectral backend: the bump's
    transfer times each derivative's symbol, for FFT size ``shape``.

    Cached across layers: fitting a plane builds a layer per batch of tiles, and every batch
    has the same window and radius, so the transform is computed once, not per batch (four
    entries, of about 8 MB each for a 256 px tile: the std's smoothing bias uses other radii).
    """
    delta_um, h, ndim, derivatives, symbol, half_width = spec
    ny, nx = shape
    kernel = bump_kernel(delta_um, h, ndim=ndim)
    kernel2d = kernel if ndim == 2 else kernel[None, :]
    ky = 2 * np.pi * np.fft.fftfreq(ny)  # rad/px
    kx = 2 * np.pi * np.fft.rfftfreq(nx)
    eta_hat = kernel_transfer(kernel2d, ky[:, None], kx[None, :])
    mults = []
    for name in derivatives:
        total = np.zeros((ny, kx.size), dtype=np.complex128)
        for coef, (oy, ox) in parse_derivative(name):
            fy = _axis_symbol(oy, ky, symbol, half_width) / h**oy
            fx = _axis_symbol(ox, kx, symbol, half_width) / h**ox
            total += coef * fy[:, None] * fx[None, :]
        mults.append(total * eta_hat)
    return np.stack(mults)


def _axis_symbol(order: int, k: np.ndarray, symbol: str, half_width: int) -> np.ndarray:
    """Fourier symbol of a 1-D derivative of ``order`` at wavenumbers ``k`` (rad/px)."""
    if order == 0:
        return np.ones_like(k, dtype=np.complex128)
    if symbol == "exact":
        f = (1j * k) ** order
        if order % 2 == 1:
            f[np.isclose(np.abs(k), np.pi)] = 0.0  # odd derivative at Nyquist is not real
        return f
    j = np.arange(-half_width, half_width + 1, dtype=np.float64)
    return np.exp(1j * np.multiply.outer(k, j)) @ fd_weights(order, half_width)


class Mollifier:
    """Mollified derivative maps of a batch of fields ``(B, C, H, W)`` in one pass.

    Parameters
    ----------
    delta_um
        Mollifier radius in micrometres.
    pixel_size_um
        Grid spacing in micrometres.
    derivatives
        Names of the maps to return (see module docstring).
    backend
        ``"spectral"`` (default; FFT, cost independent of ``delta``) or ``"direct"``
        (one multi-channel convolution).
    symbol
        Spectral backend only. ``"stencil"`` (default) multiplies by ``eta_hat(k)`` times the
        symbol of the moment-corrected stencil: the same local operator as the direct backend,
        so reflect seams do not spread past the support. ``"exact"`` multiplies by
        ``(i k)^a eta_hat(k)``: exact for periodic tiles, but a reflect seam's kink then
        pollutes high orders far into the interior (measured: a biharmonic 4x off 12 px from
        the border at delta = 2 px).
    halo_px
        Reflect padding on each side. Default: the support plus 2.
    stencil_half_width
        Half-width of the finite-difference stencils of the direct backend.

    The layer is a plain callable; it holds no parameters and follows the input's device and
    dtype. Gradients flow through it to ``g``.

    Examples
    --------
    >>> import torch
    >>> m = Mollifier(0.1, 0.025, ("u", "lap"))
    >>> out = m(torch.zeros(2, 1, 32, 32))
    >>> sorted(out), tuple(out["lap"].shape)
    (['lap', 'u'], (2, 1, 32, 32))
    """

    def __init__(
        self,
        delta_um: float,
        pixel_size_um: float,
        derivatives: Iterable[str] = ("u", "x", "y", "lap", "bilap"),
        *,
        backend: Backend = "spectral",
        symbol: Symbol = "stencil",
        halo_px: int | None = None,
        stencil_half_width: int = 6,
        ndim: Literal[1, 2] = 2,
    ) -> None:
        if backend not in ("spectral", "direct"):
            raise ValueError(f"backend must be 'spectral' or 'direct', got {backend!r}")
        if symbol not in ("stencil", "exact"):
            raise ValueError(f"symbol must be 'stencil' or 'exact', got {symbol!r}")
        if symbol == "exact" and backend == "direct":
            raise ValueError("symbol='exact' needs the spectral backend")
        self.delta_um = float(delta_um)
        self.pixel_size_um = float(pixel_size_um)
        self.derivatives = tuple(dict.fromkeys(derivatives))
        for name in self.derivatives:
            parse_derivative(name)
        self.backend = backend
        self.symbol = symbol
        self.stencil_half_width = int(stencil_half_width)
        if ndim not in (1, 2):
            raise ValueError(f"ndim must be 1 or 2, got {ndim!r}")
        self.ndim = ndim
        if ndim == 1 and any("y" in n for n in self.derivatives):
            raise ValueError(f"a 1-D mollifier has no y derivatives: {self.derivatives}")
        self.kernel = bump_kernel(self.delta_um, self.pixel_size_um, ndim=ndim)
        self.radius_px = self.kernel.shape[-1] // 2
        self.halo_px = int(halo_px) if halo_px is not None else self.support_px + 2
        self._cache: dict = {}
        # what the spectral multipliers depend on: layers built alike share them
        self._spec = (self.delta_um, self.pixel_size_um, ndim, self.derivatives, symbol,
                      self.stencil_half_width)

    @property
    def support_px(self) -> int:
        """Radius in pixels of the region of ``g`` that one output pixel depends on: the bump
        plus the stencil. A tile's halo must cover at least this (``symbol='exact'`` is global:
        there, only a periodic tile is exact)."""
        return self.radius_px + self.stencil_half_width

    def __repr__(self) -> str:
        return (
            f"Mollifier(delta_um={self.delta_um}, pixel_size_um={self.pixel_size_um}, "
            f"derivatives={self.derivatives}, backend={self.backend!r})"
        )

    def __call__(self, g):
        return self.forward(g)

    def forward(self, g):
        """Return ``{name: tensor (B, C, H, W)}`` (``(B, C, T)`` when ``ndim=1``) for every
        requested derivative."""
        if g.ndim != self.ndim + 2:
            want = "(B, C, H, W)" if self.ndim == 2 else "(B, C, T)"
            raise ValueError(f"expected a {want} tensor, got shape {tuple(g.shape)}")
        g4 = g if self.ndim == 2 else g.unsqueeze(2)
        stacked = self._spectral(g4) if self.backend == "spectral" else self._direct(g4)
        if self.ndim == 1:
            stacked = stacked.squeeze(3)
        return {name: stacked[:, :, i] for i, name in enumerate(self.derivatives)}

    # ------------------------------------------------------------------ spectral
    def _pad(self, g, pad_y: int, pad_x: int):
        """Reflect-pad the last two axes (repeatedly where a tile is smaller than the pad)."""
        import torch.nn.functional as F

        out = g
        while pad_y > 0 or pad_x > 0:
            h, w = out.shape[-2:]
            if (pad_y > 0 and h < 2) or (pad_x > 0 and w < 2):
                from .errors import TooSmallError

                raise TooSmallError(f"cannot reflect-pad a tile of shape {(h, w)}")
            sy, sx = min(pad_y, h - 1), min(pad_x, w - 1)
            out = F.pad(out, (sx, sx, sy, sy), mode="reflect")
            pad_y, pad_x = pad_y - sy, pad_x - sx
        return out

    def _multipliers(self, shape: tuple[int, int], device, dtype):
        import torch

        key = ("spectral", shape, str(device), dtype)
        if key in self._cache:
            return self._cache[key]
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        m = torch.as_tensor(_spectral_multipliers(self._spec, shape), dtype=cdtype,
                            device=device)
        self._cache[key] = m
        return m

    def _spectral(self, g):
        import torch

        h, w = g.shape[-2:]
        pad = self.halo_px
        pad_y = pad if self.ndim == 2 else 0
        gp = self._pad(g, pad_y, pad)
        hp, wp = gp.shape[-2:]
        fh, fw = _fast_len(hp), _fast_len(wp)
        if (fh, fw) != (hp, wp):
            import torch.nn.functional as F

            # extend to a fast FFT size by replicating the (already reflected) border
            gp = F.pad(gp, (0, fw - wp, 0, fh - hp), mode="replicate")
        mult = self._multipliers((fh, fw), g.device, g.dtype)
        b, c, d = gp.shape[0], gp.shape[1], mult.shape[0]
        # the spectra of all derivative maps of one field are 2 * D padded planes of complex
        # numbers: transform a few fields at a time, so that this transient stays near
        # SPECTRAL_CHUNK_BYTES whatever the batch, and keep only the cropped maps
        per_item = 2 * c * d * fh * (fw // 2 + 1) * gp.element_size()
        step = max(1, SPECTRAL_CHUNK_BYTES // per_item)

        def maps(x):
            out = torch.fft.irfft2(torch.fft.rfft2(x).unsqueeze(2) * mult, s=(fh, fw))
            return out[..., pad_y : pad_y + h, pad : pad + w]

        if step >= b:
            return maps(gp)
        if torch.is_grad_enabled() and gp.requires_grad:  # the graph keeps every chunk anyway
            return torch.cat([maps(gp[i : i + step]) for i in range(0, b, step)])
        out = torch.empty((b, c, d, h, w), dtype=g.dtype, device=g.device)
        for i in range(0, b, step):
            out[i : i + step] = maps(gp[i : i + step])
        return out

    # ------------------------------------------------------------------ direct
    def _direct_weight(self, device, dtype):
        import torch

        key = ("direct", str(device), dtype)
        if key not in self._cache:
            k = direct_kernels(
                self.delta_um,
                self.pixel_size_um,
                self.derivatives,
                stencil_half_width=self.stencil_half_width,
                ndim=self.ndim,
            )
            k = k[:, ::-1, ::-1].copy()  # conv2d correlates: flip for a true convolution
            self._cache[key] = torch.as_tensor(k, dtype=dtype, device=device).unsqueeze(1)
        return self._cache[key]

    def _direct(self, g):
        import torch.nn.functional as F

        b, c, h, w = g.shape
        weight = self._direct_weight(g.device, g.dtype)  # (D, 1, Ky, Kx)
        gp = self._pad(g.reshape(b * c, 1, h, w), weight.shape[-2] // 2, weight.shape[-1] // 2)
        out = F.conv2d(gp, weight)  # (B*C, D, H, W)
        return out.reshape(b, c, len(self.derivatives), h, w)


def mollify(
    field: np.ndarray,
    delta_um: float,
    pixel_size_um: float,
    derivatives: Iterable[str] = ("u", "x", "y", "lap", "bilap"),
    *,
    backend: Backend = "spectral",
) -> dict[str, np.ndarray]:
    """NumPy convenience wrapper: derivative maps of a 2-D field or a ``(C, H, W)`` stack.

    >>> out = mollify(np.ones((16, 16)), 0.05, 0.025, ("u", "lap"))
    >>> bool(np.allclose(out["u"], 1.0)), bool(np.allclose(out["lap"], 0.0, atol=1e-9))
    (True, True)
    """
    import torch

    arr = np.asarray(field, dtype=np.float64)
    squeeze = arr.ndim == 2
    t = torch.as_tensor(arr.reshape((1, -1) + arr.shape[-2:]))
    layer = Mollifier(delta_um, pixel_size_um, derivatives, backend=backend)
    with torch.no_grad():
        out = layer(t)
    return {k: (v[0, 0] if squeeze else v[0]).numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- autograd
def autograd_derivatives(
    fn: Callable,
    coords,
    derivatives: Iterable[str],
    *,
    create_graph: bool = True,
) -> dict:
    """Derivatives of a coordinate network by nested autograd (the paper's baseline).

    Parameters
    ----------
    fn
        Maps coordinates ``(N, 2)`` ordered ``(y, x)`` in micrometres to values ``(N, C)``;
        each output row must depend only on its own input row.
    coords
        ``(N, 2)`` tensor; it is cloned with ``requires_grad``.
    derivatives
        Names as for :class:`Mollifier`; ``"u"`` is the network's value (not mollified).
    create_graph
        Keep the graph so that a loss on the derivatives can be backpropagated.

    Returns ``{name: (N, C)}``.
    """
    import torch

    xy = coords.detach().clone().requires_grad_(True)
    u = fn(xy)
    names = tuple(dict.fromkeys(derivatives))
    cache: dict[tuple[int, int], object] = {(0, 0): u}

    def partial(order: tuple[int, int]):
        if order in cache:
            return cache[order]
        oy, ox = order
        prev = (oy, ox - 1) if ox > 0 else (oy - 1, ox)
        axis = 1 if ox > 0 else 0
        base = partial(prev)
        cols = []
        for c in range(base.shape[1]):
            (grad,) = torch.autograd.grad(
                base[:, c].sum(), xy, create_graph=True, allow_unused=False
            )
            cols.append(grad[:, axis])
        cache[order] = torch.stack(cols, dim=1)
        return cache[order]

    out = {}
    for name in names:
        total = None
        for coef, order in parse_derivative(name):
            term = coef * partial(order)
            total = term if total is None else total + term
        out[name] = total if create_graph else total.detach()
    return out
