"""The measured noise power spectrum of an image channel and the Gaussian model fitted to it.

The pieces :mod:`pipeline.estimate.noise` is built from: square patches of a channel, the
median of their Hann-windowed periodograms, its radial average, the spectrum a unit-sum
Gaussian kernel gives on the pixel grid (and what a patch's window makes of it), and the
least-squares fit of ``a (G_c^2 + k G_{w c}^2) + b`` to the radial spectrum in log scale.
What the model means and how it is used: :mod:`pipeline.estimate.noise`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

__all__ = ["LN2", "WindowedSpectrum", "fit_spectrum", "gaussian_spectrum", "kernel_ft",
           "median_periodogram", "radial_bins", "radial_mean", "square_patches"]

LN2 = float(np.log(2.0))


def kernel_ft(f: np.ndarray, c: float) -> np.ndarray:
    """Transfer function along one axis of a unit-sum Gaussian of std ``c`` px sampled on the
    pixel grid: by Poisson summation the periodised continuous one, 1 at ``f = 0`` and
    flat (white) as ``c -> 0``.

    >>> float(kernel_ft(np.array(0.0), 1.0)), round(float(kernel_ft(np.array(0.5), 0.0)), 6)
    (1.0, 1.0)
    """
    n = np.arange(-3, 4)
    num = np.exp(-2 * np.pi**2 * c**2 * (np.asarray(f)[..., None] + n) ** 2).sum(-1)
    return num / np.exp(-2 * np.pi**2 * c**2 * n.astype(float) ** 2).sum()


def gaussian_spectrum(shape: tuple[int, int], a: float, c: float, b: float, a2: float = 0.0,
                      c2: float = 0.0) -> np.ndarray:
    """``a G_c^2 + a2 G_c2^2 + b`` on the ``rfft2`` grid of ``shape`` (``G``: :func:`kernel_ft`
    along each axis)."""
    fy, fx = np.fft.fftfreq(shape[0]), np.fft.rfftfreq(shape[1])
    out = a * (kernel_ft(fy, c)[:, None] * kernel_ft(fx, c)[None, :]) ** 2 + b
    if a2:
        out = out + a2 * (kernel_ft(fy, c2)[:, None] * kernel_ft(fx, c2)[None, :]) ** 2
    return out


def square_patches(channel: np.ndarray, mask: np.ndarray | None, p: int) -> np.ndarray:
    """Non-overlapping ``p`` x ``p`` patches lying wholly inside ``mask``."""
    h, w = channel.shape
    out = []
    for y in range(0, h - p + 1, p):
        for x in range(0, w - p + 1, p):
            if mask is None or mask[y : y + p, x : x + p].all():
                out.append(channel[y : y + p, x : x + p])
    return np.asarray(out, dtype=np.float64).reshape(-1, p, p)


def median_periodogram(patches: np.ndarray) -> np.ndarray:
    """Median over patches of the Hann-windowed periodogram, ``(p, p)`` (fft2 layout), scaled
    so that white noise of variance ``v`` gives ``v`` at every frequency."""
    n, p, _ = patches.shape
    yy, xx = np.mgrid[:p, :p] / (p - 1)
    design = np.stack([np.ones(p * p), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, patches.reshape(n, -1).T, rcond=None)
    detr = patches - (design @ coef).T.reshape(n, p, p)  # plane removed: less leakage
    win = np.outer(np.hanning(p), np.hanning(p))
    power = np.abs(np.fft.fft2(detr * win)) ** 2 / float((win**2).sum())
    return np.median(power, axis=0) / LN2  # median of an exponential is ln 2 x its mean


class WindowedSpectrum:
    """Expected Hann-windowed periodogram of the Gaussian component on a ``p`` x ``p`` patch:
    the spectrum convolved with the window's (by the product of autocorrelations, on a grid
    four times finer), so that the fit sees the window's leakage at steep spectra."""

    def __init__(self, p: int) -> None:
        self.p, m = p, 4 * p
        self.m = m
        win = np.zeros((m, m))
        win[:p, :p] = np.outer(np.hanning(p), np.hanning(p))
        self.acf_w = np.fft.ifft2(np.abs(np.fft.fft2(win)) ** 2).real / float((win**2).sum())
        self.fy = np.fft.fftfreq(m)[:, None]
        self.fx = np.fft.fftfreq(m)[None, :]
        self._unit: dict[float, np.ndarray] = {}

    def expected(self, a: float, c: float) -> np.ndarray:
        g2 = (kernel_ft(self.fy, c) * kernel_ft(self.fx, c)) ** 2
        acf_s = np.fft.ifft2(a * g2).real
        ep = np.fft.fft2(acf_s * self.acf_w).real
        return ep[:: self.m // self.p, :: self.m // self.p]

    def unit(self, c: float) -> np.ndarray:
        """``expected(1.0, c)``, kept: the clustering profile asks for the same widths for
        every ratio it tries."""
        c = float(c)
        if c not in self._unit:
            self._unit[c] = self.expected(1.0, c)
        return self._unit[c]


def radial_bins(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Radial frequency (cycles/px) of each fft2 bin of a ``p`` x ``p`` patch, and a bin index
    (annuli of width ``1/p``)."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(p), np.fft.fftfreq(p), indexing="ij"))
    return f, np.rint(f * p).astype(int)


def radial_mean(x: np.ndarray, idx: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean of ``x`` over each annulus of :func:`radial_bins`' index ``idx``, the annuli
    ``keep`` selects."""
    return np.bincount(idx.ravel(), x.ravel())[keep] / np.bincount(idx.ravel())[keep]


def fit_spectrum(window: WindowedSpectrum, idx: np.ndarray, keep: np.ndarray, y: np.ndarray,
                 pw: np.ndarray, k: float, floor: float = 0.0, *, c_max: float,
                 width: float) -> tuple[float, np.ndarray]:
    """Least-squares fit in log scale of ``a (G_c^2 + k G_{w c}^2) + b`` (``w``: ``width``)
    plus ``floor`` to the radial spectrum ``y = log(pw + floor)`` (``floor``: the noise
    model's spectrum range; ``window``'s expected periodograms stand for ``G^2``): a profile
    over ``c`` on a grid up to ``c_max`` (``a`` and ``b`` fitted for each), then all three
    refined. Returns the cost and ``(log a, c, log b)``."""

    def shape(c: float) -> np.ndarray:
        e = window.unit(c)
        return e + k * window.unit(width * c) if k else e

    def resid(q: np.ndarray) -> np.ndarray:
        la, c, lb = q
        m = radial_mean(np.exp(la) * shape(c) + np.exp(lb), idx, keep) + floor
        return np.log(np.maximum(m, 1e-300)) - y

    def fit_ab(sh: np.ndarray) -> tuple[float, np.ndarray]:
        def r2(q: np.ndarray) -> np.ndarray:
            return np.log(np.maximum(np.exp(q[0]) * sh + np.exp(q[1]) + floor, 1e-300)) - y
        q0 = np.array([float(np.median(y - np.log(np.maximum(sh, 1e-300)))),
                       float(np.log(pw[-3:].min()))])
        # inside the bounds: a wide kernel on bright raw intensities put the start above them
        q0 = np.clip(q0, -80 + 1e-6, 20 - 1e-6)
        res = least_squares(r2, q0, bounds=([-80, -80], [20, 20]), x_scale="jac")
        return float(res.cost), res.x

    profile = []
    for c0 in np.arange(0.05, c_max + 1e-9, 0.05):
        cost, (la0, lb0) = fit_ab(radial_mean(shape(c0), idx, keep))
        profile.append((cost, np.array([la0, c0, lb0])))
    q0 = min(profile, key=lambda t: t[0])[1]
    best = least_squares(resid, q0, bounds=([-80, 0.0, -80], [20, c_max, 20]), x_scale="jac")
    return float(best.cost), best.x
