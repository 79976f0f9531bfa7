"""Mollifier layer: every order against analytic derivatives, backends against each other,
gradients, and the trap of naively sampled derivative kernels."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from pipeline.mollifier import (
    Mollifier,
    autograd_derivatives,
    bump_kernel,
    fd_weights,
    kernel_transfer,
    mollify,
    parse_derivative,
)

H = 0.02  # um per pixel
NAMES = ("u", "x", "y", "xx", "xy", "yy", "xxx", "xxy", "xxxx", "xxyy", "lap", "bilap")
DELTAS_PX = (2, 3, 4, 8, 16)


def sinusoid(shape, kx, ky, phase=0.3):
    """Analytic derivatives of sin(kx x + ky y + phase) for every name in NAMES."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] * H
    arg = kx * x + ky * y + phase
    # d^n/dx^n sin(arg) = kx^n sin(arg + n pi/2); mixed similarly
    def deriv(oy, ox):
        return kx**ox * ky**oy * np.sin(arg + (ox + oy) * np.pi / 2)

    out = {}
    for name in NAMES:
        out[name] = sum(c * deriv(oy, ox) for c, (oy, ox) in parse_derivative(name))
    return np.sin(arg), out


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("backend", ["spectral", "direct"])
@pytest.mark.parametrize("delta_px", DELTAS_PX)
def test_sinusoid_every_order(backend, delta_px):
    shape = (96, 112)
    kx, ky = 2 * np.pi / (24 * H), 2 * np.pi / (-36 * H)
    f, expected = sinusoid(shape, kx, ky)
    layer = Mollifier(delta_px * H, H, NAMES, backend=backend)
    out = layer(torch.as_tensor(f)[None, None])
    transfer = kernel_transfer(layer.kernel, ky * H, kx * H)
    s = layer.support_px
    for name in NAMES:
        got = out[name][0, 0].numpy()[s:-s, s:-s]
        want = transfer * expected[name][s:-s, s:-s]
        assert rel_err(got, want) < 1e-3, (name, rel_err(got, want))


@pytest.mark.parametrize("backend", ["spectral", "direct"])
@pytest.mark.parametrize("delta_px", DELTAS_PX)
def test_polynomial_every_order(backend, delta_px):
    """On a degree-4 polynomial, d^a (eta * p) = eta * d^a p exactly (moment conditions)."""
    shape = (80, 80)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] * H
    X, Y = x - 0.7, y - 0.9
    p = 0.3 * X**4 - 0.5 * X**2 * Y**2 + 0.2 * Y**3 * X + X * Y + 0.7 * Y**2 - X
    analytic = {
        "u": p,
        "x": 1.2 * X**3 - X * Y**2 + 0.2 * Y**3 + Y - 1,
        "y": -X**2 * Y + 0.6 * Y**2 * X + X + 1.4 * Y,
        "xx": 3.6 * X**2 - Y**2,
        "xy": -2 * X * Y + 0.6 * Y**2 + 1,
        "yy": -X**2 + 1.2 * Y * X + 1.4,
        "xxx": 7.2 * X,
        "xxy": -2 * Y,
        "xxxx": 7.2 + 0 * X,
        "xxyy": -2 + 0 * X,
    }
    analytic["lap"] = analytic["xx"] + analytic["yy"]
    analytic["bilap"] = analytic["xxxx"] + 2 * analytic["xxyy"] + 0 * X
    layer = Mollifier(delta_px * H, H, NAMES, backend=backend)
    out = layer(torch.as_tensor(p)[None, None])
    s = layer.support_px
    for name in NAMES:
        want = convolve(analytic[name], layer.kernel, mode="nearest")[s:-s, s:-s]
        got = out[name][0, 0].numpy()[s:-s, s:-s]
        assert rel_err(got, want) < 1e-3, (name, delta_px, rel_err(got, want))


def test_backends_agree_on_noise():
    rng = np.random.default_rng(0)
    g = torch.as_tensor(rng.normal(size=(2, 3, 64, 72)))
    spec = Mollifier(4 * H, H, NAMES)(g)
    direct = Mollifier(4 * H, H, NAMES, backend="direct")(g)
    for name in NAMES:
        # identical everywhere, borders included: the same operator by two routes
        assert rel_err(spec[name].numpy(), direct[name].numpy()) < 1e-9, name


def test_exact_symbol_on_periodic_tile():
    shape = (64, 64)
    kx, ky = 2 * np.pi / (16 * H), 2 * np.pi / (32 * H)  # periodic on the tile
    f, expected = sinusoid(shape, kx, ky)
    layer = Mollifier(3 * H, H, NAMES, symbol="exact", halo_px=0)
    out = layer(torch.as_tensor(f)[None, None])
    transfer = kernel_transfer(layer.kernel, ky * H, kx * H)
    for name in NAMES:
        assert rel_err(out[name][0, 0].numpy(), transfer * expected[name]) < 1e-9, name


def test_autograd_backend_matches_layer_up_to_transfer():
    kx, ky = 2 * np.pi / (20 * H), 2 * np.pi / (28 * H)
    shape = (48, 48)
    f, expected = sinusoid(shape, kx, ky)

    def fn(yx):
        return torch.sin(kx * yx[:, 1:2] + ky * yx[:, 0:1] + 0.3)

    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] * H
    coords = torch.as_tensor(np.stack([yy.ravel(), xx.ravel()], 1))
    names = ("u", "x", "y", "xy", "lap", "bilap")
    auto = autograd_derivatives(fn, coords, names)
    layer = Mollifier(4 * H, H, names)
    out = layer(torch.as_tensor(f)[None, None])
    transfer = kernel_transfer(layer.kernel, ky * H, kx * H)
    s = layer.support_px
    for name in names:
        a = auto[name][:, 0].detach().numpy().reshape(shape)
        assert rel_err(a, expected[name]) < 1e-9, name
        assert rel_err(out[name][0, 0].numpy()[s:-s, s:-s], transfer * a[s:-s, s:-s]) < 1e-3


@pytest.mark.parametrize("backend", ["spectral", "direct"])
def test_gradients_flow(backend):
    layer = Mollifier(2 * H, H, ("u", "x", "bilap"), backend=backend)
    g = torch.randn(1, 1, 20, 22, dtype=torch.float64, requires_grad=True)

    def f(t):
        out = layer(t)
        return out["u"].sum() + (out["x"] ** 2).sum() + (out["bilap"] * out["u"]).mean()

    assert torch.autograd.gradcheck(f, (g,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_one_dimensional():
    t = np.arange(300) * H
    w = 2 * np.pi / (40 * H)
    layer = Mollifier(5 * H, H, ("u", "x", "xx"), ndim=1)
    out = layer(torch.as_tensor(np.sin(w * t))[None, None])
    transfer = kernel_transfer(layer._kernel2d, 0.0, w * H)
    s = layer.support_px
    got = out["x"][0, 0].numpy()[s:-s]
    assert rel_err(got, transfer * w * np.cos(w * t[s:-s])) < 1e-3
    with pytest.raises(ValueError, match="no y derivatives"):
        Mollifier(5 * H, H, ("y",), ndim=1)


def test_naive_sampled_kernel_is_wrong_where_ours_is_right():
    """The trap of SCIENCE.md section 3: sampling the bump's analytic Laplacian on the grid."""
    delta_px = 4
    r = delta_px
    j = np.arange(-r, r + 1)
    yy, xx = np.meshgrid(j, j, indexing="ij")
    rho2 = (xx**2 + yy**2) / r**2
    inside = rho2 < 1
    q = np.where(inside, 1 - rho2, 1.0)
    eta = np.where(inside, np.exp(-1 / q), 0)
    # 2-D Laplacian of exp(-1/(1-rho^2)) in rho: eta (4 rho^2/q^4 - 8 rho^2/q^3 - 4/q^2)
    lap_naive = np.where(inside, eta * (4 * rho2 / q**4 - 8 * rho2 / q**3 - 4 / q**2), 0)
    lap_naive = lap_naive / eta.sum() / (r**2 * H**2)
    kx = 2 * np.pi / (40 * H)
    f, expected = sinusoid((64, 64), kx, 0.0)
    naive = convolve(f, lap_naive, mode="wrap")[16:-16, 16:-16]
    ours = mollify(f, delta_px * H, H, ("lap",))["lap"][16:-16, 16:-16]
    want = expected["lap"][16:-16, 16:-16] * kernel_transfer(bump_kernel(delta_px * H, H), 0, kx * H)
    assert rel_err(ours, want) < 1e-3
    assert rel_err(naive, want) > 0.5


def test_fd_weights_moment_conditions():
    w = fd_weights(4, 6)
    j = np.arange(-6, 7)
    for p in range(13):
        moment = (w * j**p).sum() / math.factorial(p)
        assert abs(moment - (p == 4)) < 1e-8


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one pixel"):
        bump_kernel(0.01, 0.02)
    with pytest.raises(ValueError, match="unknown derivative"):
        Mollifier(0.1, 0.02, ("z",))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Mollifier(0.1, 0.02)(torch.zeros(3, 3))
