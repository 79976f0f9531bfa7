"""Noise model of one image channel: its level and its spatial correlation.

A camera adds noise that is independent from pixel to pixel (white). A STORM/PALM image is
rendered from localisations with a Gaussian of about the localisation precision, so its noise
is white Poisson noise **convolved with that Gaussian**: correlated over about a pixel, with
little power at the highest spatial frequencies. A noise level from the finest wavelet
coefficients (the median absolute deviation of the diagonal detail, what
``skimage.restoration.estimate_sigma`` does) sees only that high-frequency power and
underestimates such noise several-fold.

:func:`estimate_noise_model` fits the noise **power spectrum** instead::

    S(f) = a exp(-4 pi^2 c^2 |f|^2) + b          (f in cycles per pixel)

white noise (``b``) plus white noise blurred by a Gaussian of standard deviation ``c`` pixels
(``a``). The spectrum is measured where the signal is weak: the median, over square patches,
of each patch's Hann-windowed periodogram (the median makes it robust to patches with edges),
radially averaged and fitted in log scale at frequencies ``|f| >= F_LOW`` cycles/px, where the
blurred signal of a fluorescence image has little power (measured on the synthetic camera
cases: flat, i.e. noise only, above 0.16 cycles/px). The fitted model is then extrapolated to
the low frequencies it was not fitted on; that is the assumption (a Gaussian noise kernel).

**Clustered localisations.** A molecule that blinks gives several localisations, each
jittered by the precision about the same position. That adds a second term,
``k a exp(-4 pi^2 (sqrt(2) c)^2 |f|^2)`` (``k``: the mean number of *other* localisations of a
localisation's molecule; ``sqrt(2) c``: two jitters, rendered at about the precision). It lies
mostly below the fitted band, so the one-term fit extrapolates a third to a half of the true
low-frequency noise on blinking renderings, and the bandwidth choice then takes that noise
for signal and under-smooths. The band cannot always rule the term out, and cannot measure it
well either; so for each ratio ``k`` of :data:`CLUSTER_RATIOS` the three parameters are
refitted with it, and of the fits that cost at most ``1 + CLUSTER_TOL`` times the one-term
fit's, the one with the **most noise power at zero frequency** is kept: the most noise the
image allows at the scales the bandwidth choice judges. Where the one-term correlation length
exceeds :data:`CLUSTER_C_MAX` the fitted band holds too little of either term to tell them
apart, and no term is added. How the constants were chosen: ``docs/bandwidth.md``.

**Correlation wider than the band.** A rendering whose Gaussian is wider than about 2 px (a
STORM image rendered at 10 nm pixels with a precision of 20 nm or more) leaves no noise
power above ``F_LOW``: the fit without the floor below (section "The spectrum's range")
finds the correlation at its bound :data:`C_MAX` (with the floor it is fitted on the two or
three frequencies above it and comes out short), or only the
rendering's rounding (a pixel std below one quantisation step, :data:`ROUNDING_FLOOR`), or in
floating-point data the far tail of its Gaussian (a noise far below any photon count's,
:data:`WHITE_FLOOR`), and the bandwidth choice would take the noise for signal. Then the
model is fitted again on 2 x 2-binned pixels (up to :data:`MAX_BIN`), where the correlation
is half as many pixels wide, and mapped back: binning by 2 averages over a box of variance
1/4 px² and keeps the low-frequency power per area, so ``a = 4 a_bin``, ``b = 4 b_bin``,
``c² = 4 c_bin² − 1/4``. It is used when it is correlated
and wider than the full-resolution fit. The binned fit looks for a clustering term too: a
blinking rendering 2 px wide needs it (without it the model held half of its noise power at
the scales the window is chosen on, and r fell by 0.10-0.13), although on renderings without
blinking it can take signal for noise (up to 1.47 times the level; ``docs/bandwidth.md``).

**The spectrum's range.** A rendering blurred by more than about 1.5 px has, at the top of the
band, a noise power 20 or more decades below its value at 0.2 cycles/px; a model of a
Gaussian kernel fitted in log scale there is pulled by whatever sits at that depth: the
renderer's truncated kernel, the window's leakage of the signal. An integer image hides it
under its rounding (a white floor); a floating-point one does not, and its level came out up to
twice the truth (and the bandwidth choice then over-smoothed). So the measured spectrum and the
model are both given a white floor of :data:`SPECTRUM_RANGE` times the band's highest value:
the fit sees the spectrum over that range only, on any data type (a floor far below a white
noise changes nothing). How the value was chosen: ``docs/bandwidth.md``.

:meth:`NoiseModel.sample` draws noise with exactly the model's spectrum (and so its
covariance), which the bandwidth choice needs for a valid noise split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .spectrum import (
    WindowedSpectrum,
    fit_spectrum,
    gaussian_spectrum,
    kernel_ft,
    median_periodogram,
    radial_bins,
    radial_mean,
    square_patches,
)

__all__ = ["NoiseModel", "estimate_noise_model", "mad_sigma", "F_LOW", "PATCH_PX"]

F_LOW = 0.2
"""Lowest spatial frequency (cycles/px) the spectrum is fitted on."""
PATCH_PX = 32
"""Side of the patches whose periodograms are combined (16 when too few fit)."""
F_DOMINANT = 0.3
"""Correlated noise is accepted only if it exceeds the white part up to this frequency."""
RHO_MIN = 0.1
"""Noise whose lag-1 autocorrelation is below this is taken as white (camera images of the
tuning seeds: at most 0.02; a rendering at 0.5 px precision: 0.27)."""
C_MAX = 2.0
"""Largest correlation length (px) fitted: beyond it the noise has no power left above F_LOW."""
CLUSTER_TOL: float | None = 0.03
"""Clustered localisations (module text): a clustering term is admissible when its fit costs
at most ``1 + CLUSTER_TOL`` times the one-term fit's; ``None``: no clustering term (0.05
admitted one on blurred white noise, 0.1 on sparse renderings without blinking;
``docs/bandwidth.md``)."""
CLUSTER_RATIOS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""The clustering ratios ``k`` tried (module text)."""
CLUSTER_C_MAX = 1.1
"""Largest one-term correlation length (px) at which a clustering term is looked for: beyond
it the fitted band holds too little of either term to tell them apart (renderings at 1.25 px
without blinking were given a term)."""
CLUSTER_WIDTH = float(np.sqrt(2.0))
"""Width of the clustering term relative to ``c``: localisations of one molecule differ by
the precision twice, rendered at about the precision."""
WHITE_FLOOR = 2e-3
"""A fit whose pixel std is below this fraction of the channel's level (its median,
or its 1st-99th percentile range when the median is 0) is no photon-counting noise: that
would take more than 250,000 photons per pixel. Such an image was rendered or smoothed, its
noise is correlated over more pixels than the fitted band can see, and it is looked for on
binned pixels (module text)."""
ROUNDING_FLOOR = 1.0
"""A fit whose pixel std is below this many quantisation steps of the data (integer images,
calibrated: the spacing of the values a channel takes) sees nothing but the rounding (its std
is 0.29 steps): no camera counts a noise below one unit, so the image was rendered or
smoothed and its noise is looked for on binned pixels (module text)."""
MAX_BIN = 8
"""Largest binning (per side) at which the noise of a rendered or smoothed image is looked for."""
SPECTRUM_RANGE = 1e-3
"""The spectrum is fitted over this range below its highest value in the band (module text):
a white floor of this fraction of that value is added to the measured spectrum and to the
model. Chosen on tuning data (``docs/bandwidth.md``): 1e-4 to 1e-2 all fix float renderings;
3e-4 and 1e-3 tie for the smallest worst error of the level (13 %) over drawn renderings and
Gaussian-blurred white noise, and 1e-3 keeps further from 1e-5, where the tail returned."""
_MIN_PATCHES = 6


@dataclass(frozen=True)
class NoiseModel:
    """Stationary Gaussian noise with spectrum ``a exp(-4 pi^2 c^2 |f|^2) + b`` (plus a
    clustering term ``a2 exp(-4 pi^2 c2^2 |f|^2)``).

    Attributes
    ----------
    sigma : float
        Pixel standard deviation of the noise.
    corr_length_px : float
        Correlation length: the ``c`` of a pure Gaussian-blurred white noise with the same
        lag-1 autocorrelation ``rho1``, ``c = 1 / (2 sqrt(-ln rho1))``; 0 for white noise.
    rho1 : float
        Autocorrelation of the noise at a lag of one pixel.
    a, c, b : float
        The spectrum's parameters (``c`` in pixels).
    method : str
        How it was obtained.
    a2, c2 : float
        The clustering term ``a2 exp(-4 pi^2 c2^2 |f|^2)`` (0 when none; module text).
    """

    sigma: float
    corr_length_px: float
    rho1: float
    a: float
    c: float
    b: float
    method: str
    a2: float = 0.0
    c2: float = 0.0

    @classmethod
    def from_spectrum(cls, a: float, c: float, b: float, method: str, a2: float = 0.0,
                      c2: float = 0.0) -> NoiseModel:
        """Build the model and its derived statistics from the spectrum's parameters."""
        probe = gaussian_spectrum((64, 64), a, c, b, a2, c2)
        var = float(probe.mean())
        acf = np.fft.irfft2(probe, s=(64, 64))
        rho1 = float(0.5 * (acf[0, 1] + acf[1, 0]) / acf[0, 0]) if var > 0 else 0.0
        rho1 = min(max(rho1, 0.0), 0.999)
        corr = 0.0 if rho1 < 1e-3 else float(1.0 / (2.0 * np.sqrt(-np.log(rho1))))
        return cls(sigma=float(np.sqrt(var)), corr_length_px=corr, rho1=rho1, a=float(a),
                   c=float(c), b=float(b), method=method, a2=float(a2), c2=float(c2))

    @classmethod
    def white(cls, sigma: float, method: str = "given") -> NoiseModel:
        """White noise of pixel std ``sigma``."""
        return cls(sigma=float(sigma), corr_length_px=0.0, rho1=0.0, a=0.0, c=0.0,
                   b=float(sigma) ** 2, method=method)

    def spectrum(self, shape: tuple[int, int]) -> np.ndarray:
        """The power spectrum on the ``rfft2`` grid of ``shape`` (its mean over the full grid
        is the pixel variance)."""
        return gaussian_spectrum(shape, self.a, self.c, self.b, self.a2, self.c2)

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A periodic noise field of ``shape`` with this spectrum.

        >>> m = NoiseModel.from_spectrum(1.0, 1.0, 0.0, "example")
        >>> z = m.sample((256, 256), np.random.default_rng(0))
        >>> bool(abs(z.std() / m.sigma - 1) < 0.05)
        True
        """
        shape = (int(shape[0]), int(shape[1]))
        if self.sigma == 0:
            return np.zeros(shape)
        w = np.fft.rfft2(rng.normal(size=shape))
        return np.fft.irfft2(w * np.sqrt(self.spectrum(shape)), s=shape)

    @property
    def is_white(self) -> bool:
        """True when the model has no correlated part."""
        return self.a == 0.0 and self.a2 == 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def mad_sigma(channel: np.ndarray, mask: np.ndarray | None = None) -> float:
    """White-noise std from the median absolute deviation of the finest diagonal (Haar)
    differences, on ``mask`` when given.

    >>> round(mad_sigma(np.random.default_rng(0).normal(0, 0.1, (128, 128))), 2)
    0.1
    """
    d = 0.5 * (channel[:-1, :-1] - channel[1:, :-1] - channel[:-1, 1:] + channel[1:, 1:])
    if mask is not None:
        m = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
        d = d[m]
    if d.size < 16:
        raise ValueError("too few pixels to estimate the noise")
    return float(np.median(np.abs(d - np.median(d))) / 0.6745)


def _mad_white(channel: np.ndarray, mask: np.ndarray | None) -> NoiseModel:
    """White-noise fallback when too few patches fit."""
    return NoiseModel.white(mad_sigma(channel, mask),
                            "white, MAD of diagonal differences (too few patches)")


def estimate_noise_model(channel: np.ndarray, mask: np.ndarray | None = None, *,
                         f_low: float = F_LOW, patch_px: int = PATCH_PX,
                         max_bin: int = MAX_BIN) -> NoiseModel:
    """Fit the noise model of one ``(H, W)`` channel (see the module text).

    Parameters
    ----------
    channel
        One image plane (a field or raw intensities).
    mask
        Optional boolean ``(H, W)``: only patches wholly inside it are used (e.g. the
        nuclei, away from a dark background of a different noise level).
    f_low, patch_px
        Lowest fitted frequency (cycles/px) and patch side.
    max_bin
        Largest binning tried when the correlation is wider than the band (module text); 1:
        none.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = estimate_noise_model(rng.normal(0, 0.05, (256, 256)))
    >>> round(m.sigma, 2), m.corr_length_px < 0.3
    (0.05, True)
    """
    ch = np.asarray(channel, dtype=np.float64)
    if ch.ndim != 2:
        raise ValueError(f"expected one (H, W) plane, got shape {ch.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != ch.shape:
            raise ValueError(f"mask of shape {mask.shape} does not match the plane {ch.shape}")
    if float(np.ptp(ch if mask is None else ch[mask])) == 0.0:
        return NoiseModel.white(0.0, "constant plane")
    can_bin = max_bin >= 2 and min(ch.shape) >= 4 * PATCH_PX
    model, at_bound = _estimate(ch, mask, f_low, patch_px, bound=can_bin)
    if not can_bin:
        return model
    if not at_bound:
        vals = ch if mask is None else ch[mask]
        if model.sigma >= max(WHITE_FLOOR * _level(vals), ROUNDING_FLOOR * _step(vals)):
            return model
    coarse = estimate_noise_model(_blocks(ch).mean(axis=(1, 3)),
                                  None if mask is None else _blocks(mask).all(axis=(1, 3)),
                                  f_low=f_low, patch_px=patch_px, max_bin=max_bin // 2)
    if coarse.is_white:
        return model
    def unbinned(c: float) -> float:  # a correlation length on 2 x 2 bins, in pixels
        return float(np.sqrt(max(4 * c ** 2 - 0.25, 0.0)))

    fine = NoiseModel.from_spectrum(4 * coarse.a, unbinned(coarse.c), 4 * coarse.b, "",
                                    a2=4 * coarse.a2,
                                    c2=unbinned(coarse.c2) if coarse.a2 else 0.0)
    if not model.is_white and fine.c <= model.c:
        return model
    why = ("correlation at the fitted bound" if at_bound else
           "noise below the rounding or photon-count floor")
    return replace(fine, method=f"{why} at full resolution; on 2 x 2-binned pixels: "
                   f"{coarse.method}")


def _step(vals: np.ndarray) -> float:
    """The quantisation step of a channel's values (the smallest spacing of the values it
    takes; a calibrated integer image takes a few hundred or thousand), 0 for continuous data.

    >>> counts = np.random.default_rng(0).poisson(300, 10_000)  # photon counts, calibrated
    >>> round(_step(0.002 * counts), 9), _step(np.random.default_rng(0).normal(0.3, 0.02, 10_000))
    (0.002, 0.0)
    """
    sample = np.ravel(vals)[:: max(1, np.size(vals) // 200_000)]
    levels = np.unique(sample)
    if levels.size < 3 or levels.size > sample.size // 4:
        return 0.0
    return float(np.diff(levels).min())


def _level(vals: np.ndarray) -> float:
    """The channel's level for :data:`WHITE_FLOOR`: its median, else its robust range."""
    med = abs(float(np.median(vals)))
    if med > 0:
        return med
    lo, hi = np.percentile(vals, [1, 99])
    return float(hi - lo)


def _blocks(x: np.ndarray) -> np.ndarray:
    """``x`` as 2 x 2 blocks ``(H/2, 2, W/2, 2)`` (an odd last row or column dropped): reduce
    axes 1 and 3 to bin it."""
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2)


def _estimate(ch: np.ndarray, mask: np.ndarray | None, f_low: float, patch_px: int, *,
              bound: bool = True) -> tuple[NoiseModel, bool]:
    """:func:`estimate_noise_model` at full resolution, and whether the correlation lies at
    the fitted bound: the one-term fit *without* the spectrum's floor puts ``c`` at
    :data:`C_MAX` (module text: with the floor, a correlation of 2 px or more is fitted on
    the two or three frequencies above it and comes out short, 1.87-1.93 px for 2 px).
    ``bound=False``: not asked (no binned fit can follow), and that fit is not made."""
    for p in (patch_px, patch_px // 2):
        patches = square_patches(ch, mask, p)
        if len(patches) >= _MIN_PATCHES:
            break
    else:
        return _mad_white(ch, mask), False
    p = patches.shape[-1]
    med = median_periodogram(patches)
    f, idx = radial_bins(p)
    counts = np.bincount(idx.ravel())
    fr_all = np.bincount(idx.ravel(), f.ravel()) / np.maximum(counts, 1)
    keep = (fr_all >= f_low) & (counts > 0)
    pw = radial_mean(med, idx, keep)
    if keep.sum() < 4 or not (pw > 0).all():
        return _mad_white(ch, mask), False
    window = WindowedSpectrum(p)

    def fit(y: np.ndarray, k: float, floor: float = 0.0) -> tuple[float, np.ndarray]:
        return fit_spectrum(window, idx, keep, y, pw, k, floor, c_max=C_MAX,
                            width=CLUSTER_WIDTH)

    floor = SPECTRUM_RANGE * float(pw.max())
    y = np.log(pw + floor)
    white = float(np.exp(y.mean()))
    cost_white = 0.5 * float(((np.log(white) - y) ** 2).sum())
    white = max(white - floor, 0.0)
    cost, (la, c, lb) = fit(y, 0.0, floor)
    dominant = np.exp(la) * float(kernel_ft(np.array(F_DOMINANT), c)) ** 2 > np.exp(lb)
    fitted = NoiseModel.from_spectrum(float(np.exp(la)), float(c), float(np.exp(lb)), "")
    if cost > 0.5 * cost_white or not dominant or fitted.rho1 < RHO_MIN:
        # not clearly better than white noise, or the correlated part shows only in the lowest
        # fitted frequencies: there it is the signal's edges (measured on camera images)
        return NoiseModel.white(np.sqrt(white), f"white: spectrum flat on f >= {f_low} "
                                f"cycles/px, median periodogram of {len(patches)} patches"), False
    c_free = c  # the fit without the floor: the same one where there is no floor
    if bound and floor > 0:
        c_free = float(fit(np.log(pw), 0.0)[1][1])
    at_bound = bound and c_free >= C_MAX - 0.05
    method = (f"spectrum fit a*exp(-4 pi^2 c^2 f^2) + b on f >= {f_low} cycles/px, median "
              f"periodogram of {len(patches)} patches of {patches.shape[-1]} px")
    if CLUSTER_TOL is not None and c <= CLUSTER_C_MAX:
        # of the clustering terms the fitted band does not rule out, the one that adds the
        # most noise power at the lowest frequencies (module text)
        k_best, q_best, low_best = 0.0, (la, c, lb), np.exp(la) + np.exp(lb)
        for k in CLUSTER_RATIOS[1:]:
            cost_k, q_k = fit(y, k, floor)
            low = np.exp(q_k[0]) * (1.0 + k) + np.exp(q_k[2])
            if cost_k <= (1.0 + CLUSTER_TOL) * cost and low > low_best:
                k_best, q_best, low_best = k, q_k, low
        if k_best > 0:
            la, c, lb = q_best
            a = float(np.exp(la))
            fitted = NoiseModel.from_spectrum(a, float(c), float(np.exp(lb)), "",
                                              a2=k_best * a, c2=CLUSTER_WIDTH * float(c))
            method += (f"; clustered localisations not ruled out: + {k_best:g} a exp(-4 pi^2 "
                       f"({CLUSTER_WIDTH:.3g} c)^2 f^2)")
    return replace(fitted, method=method), at_bound
