"""Mollifier layer: every order against analytic derivatives, backends against each other,
gradients, and the trap of naively sampled derivative kernels.

The expected values never come from the layer's own kernel: the bump is written out here from
its formula ``exp(-1/(1-r^2))`` (:func:`bump_weights`, normalised by its own sum), and its
unit mass and shape are checked against the continuous mollifier by quadrature
(:func:`continuous_transfer`). A wrong kernel (a Gaussian, say) or a missing normalisation
fails these tests.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
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


def bump_weights(radius_px, ndim=2):
    """Friedrichs' bump ``exp(-1/(1-r^2))`` at integer pixel offsets (``r = |j| / radius``),
    divided by its sum: the layer's documented kernel, written from the formula."""
    m = int(np.ceil(radius_px)) + 1  # generous: weights at r >= 1 are zero
    j = np.arange(-m, m + 1, dtype=np.float64)
    r2 = (j[:, None] ** 2 + j[None, :] ** 2 if ndim == 2 else j**2) / radius_px**2
    w = np.zeros_like(r2)
    inside = r2 < 1
    w[inside] = np.exp(-1.0 / (1.0 - r2[inside]))
    return w / w.sum()


def bump_transfer(radius_px, ky, kx=None):
    """``sum_j w_j cos(k . j)`` of :func:`bump_weights` at wavenumbers in rad/px (1-D when
    ``kx`` is None: then ``ky`` is the wavenumber)."""
    if kx is None:
        w = bump_weights(radius_px, ndim=1)
        j = np.arange(w.size) - w.size // 2
        return float((w * np.cos(ky * j)).sum())
    w = bump_weights(radius_px)
    j = np.arange(w.shape[0]) - w.shape[0] // 2
    return float((w * np.cos(ky * j[:, None] + kx * j[None, :])).sum())


def continuous_transfer(radius_px, k):
    """Transfer of the continuous 2-D mollifier at ``|k|`` (rad/px): the radial quadrature of
    ``exp(-1/(1-r^2)) J0(k s)`` divided by the quadrature of the bump (its mass)."""
    def eta(s):
        r = s / radius_px
        return math.exp(-1.0 / (1.0 - r * r)) if r < 1 else 0.0

    opts = {"limit": 200, "epsabs": 1e-14, "epsrel": 1e-12}
    num = integrate.quad(lambda s: eta(s) * special.j0(k * s) * s, 0, radius_px, **opts)[0]
    den = integrate.quad(lambda s: eta(s) * s, 0, radius_px, **opts)[0]
    return num / den


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
    transfer = bump_transfer(delta_px, ky * H, kx * H)
    s = layer.support_px
    for name in NAMES:
        got = out[name][0, 0].numpy()[s:-s, s:-s]
        want = transfer * expected[name][s:-s, s:-s]
        assert rel_err(got, want) < 1e-3, (name, rel_err(got, want))


@pytest.mark.parametrize("delta_px", DELTAS_PX)
def test_unit_mass_and_shape_against_the_continuous_bump(delta_px):
    """The mollified sinusoid's amplitude is the continuous Friedrichs mollifier's transfer at
    that wavenumber (quadrature, normalised by quadrature), to the grid's sampling error
    (measured at most 1.9e-3 over these radii); at k = 0 it is exactly 1 (unit mass)."""
    shape = (96, 112)
    kx, ky = 2 * np.pi / (24 * H), 2 * np.pi / (-36 * H)
    f, _ = sinusoid(shape, kx, ky)
    layer = Mollifier(delta_px * H, H, ("u",))
    s = layer.support_px
    got = layer(torch.as_tensor(f)[None, None])["u"][0, 0].numpy()[s:-s, s:-s]
    base = f[s:-s, s:-s]
    amplitude = float((got * base).sum() / (base * base).sum())
    want = continuous_transfer(delta_px, math.hypot(kx * H, ky * H))
    assert abs(amplitude - want) < 2.5e-3 * want, (amplitude, want)
    const = layer(torch.full((1, 1, 40, 40), 3.0, dtype=torch.float64))["u"].numpy()
    assert np.allclose(const, 3.0, rtol=1e-12, atol=0)
    # the library's own transfer of its own kernel agrees with the one written out here
    assert kernel_transfer(bump_kernel(delta_px * H, H), ky * H, kx * H) == pytest.approx(
        bump_transfer(delta_px, ky * H, kx * H), rel=1e-12)


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
        want = convolve(analytic[name], bump_weights(delta_px), mode="nearest")[s:-s, s:-s]
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
    transfer = bump_transfer(3, ky * H, kx * H)
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
    transfer = bump_transfer(4, ky * H, kx * H)
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
    transfer = bump_transfer(5, w * H)
    s = layer.support_px
    got = out["x"][0, 0].numpy()[s:-s]
    assert rel_err(got, transfer * w * np.cos(w * t[s:-s])) < 1e-3
    with pytest.raises(ValueError, match="no y derivatives"):
        Mollifier(5 * H, H, ("y",), ndim=1)


def test_naive_sampled_kernel_is_wrong_where_ours_is_right():
    """The trap of docs/science.md section 3: sampling the bump's analytic Laplacian on the grid."""
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
    want = expected["lap"][16:-16, 16:-16] * bump_transfer(delta_px, 0.0, kx * H)
    assert rel_err(ours, want) < 1e-3
    assert rel_err(naive, want) > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["spectral", "direct"])
def test_cuda_matches_cpu(backend):
    """Every derivative map on CUDA equals the CPU's, borders included (float64: to 1e-9;
    float32: to 1e-4 of the map's scale)."""
    rng = np.random.default_rng(0)
    g = torch.as_tensor(rng.normal(size=(2, 3, 64, 72)))
    layer = Mollifier(4 * H, H, NAMES, backend=backend)
    cpu, cuda = layer(g), layer(g.cuda())
    cpu32, cuda32 = layer(g.float()), layer(g.float().cuda())
    for name in NAMES:
        assert cuda[name].device.type == "cuda"
        assert rel_err(cuda[name].cpu().numpy(), cpu[name].numpy()) < 1e-9, name
        assert rel_err(cuda32[name].cpu().numpy(), cpu32[name].numpy()) < 1e-4, name


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


def test_spectral_chunks_give_the_same_maps_and_gradients(monkeypatch):
    """A batch transformed a few fields at a time (bounded memory) gives the maps and the
    gradients of one pass, bit for bit."""
    import pipeline.mollifier as mollifier

    layer = Mollifier(3 * H, H, ("u", "x", "lap", "bilap"))
    g = torch.randn(5, 2, 40, 36, dtype=torch.float64)
    one = layer(g)
    monkeypatch.setattr(mollifier, "SPECTRAL_CHUNK_BYTES", 1)  # one field per chunk
    chunked = layer(g)
    for name in one:
        assert torch.equal(one[name], chunked[name])
    x1 = g.clone().requires_grad_(True)
    x2 = g.clone().requires_grad_(True)
    monkeypatch.setattr(mollifier, "SPECTRAL_CHUNK_BYTES", 2**40)
    sum(v.square().sum() for v in layer(x1).values()).backward()
    monkeypatch.setattr(mollifier, "SPECTRAL_CHUNK_BYTES", 1)
    sum(v.square().sum() for v in layer(x2).values()).backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-12, atol=0)
