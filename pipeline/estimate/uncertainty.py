"""The per-pixel standard deviation of lambda: noise resampling plus two bias terms.

Every method reports ``std^2 = spread^2 + bias^2 + noise_bias^2`` per pixel:

**spread**
    The data are recorrupted into antithetic members ``y + z_k`` and ``y - z_k``, with ``z_k``
    drawn from the estimated noise model (:class:`FieldNoise`: per-channel pixel std and a
    Gaussian correlation length, so rendered localisations and other correlated noise are
    resampled with their own covariance). Each member is refitted; to first order
    ``lam(y + z) - lam(y) = J z`` has the distribution of the noise-induced error ``J n``, so
    the members' standard deviation is the noise part of the error.
**bias**
    The error the bandwidth causes. The smoothing bias of a window of width ``s`` grows about
    as ``s^2``, so how much lambda moves between ``(delta, s)`` and ``(j delta, j s)`` measures
    it. The closed form uses ``k |lam(j delta, j s) - lam(delta, s)| / (j^2 - 1)`` with
    ``k`` = :data:`WINDOW_BIAS_SCALE` (:func:`window_bias`; docs/uncertainty.md says why this
    one and why ``k``), or, where larger, the contrast a saturating window has removed, read
    from the map alone (:func:`attenuation_bias`); the neural method the symmetric
    ``|lam(j delta, j s) - lam(delta / j, s / j)| / (j^2 - j^-2)`` (:func:`smoothing_bias`).
**noise_bias**
    ``lam`` is a nonlinear function of the data (a ratio of smoothed products), so noise also
    shifts its mean: to second order ``E lam(y) - lam(f) = H[n, n] / 2``. The members see
    twice the noise variance of the data, so ``mean_k lam(y +- z_k) - lam(y)`` estimates that
    same shift; its magnitude is added.

The closed-form method computes the members in closed form (:func:`closed_form_std`); the
neural method refits its networks on the members (:mod:`.neural`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import digamma

from ..physics.base import LinearResidualModel
from .closed_form import linear_terms, local_least_squares
from .noise import NoiseModel

__all__ = [
    "FieldNoise",
    "member_data",
    "closed_form_scaled",
    "smoothing_bias",
    "window_bias",
    "WINDOW_BIAS_SCALE",
    "attenuation_bias",
    "ATTENUATION_CLIP",
    "closed_form_std",
    "unbounded",
    "combine_std",
    "log_variance_bias",
    "coverage",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldNoise:
    """The noise of ``(C, H, W)`` fields: one :class:`~pipeline.estimate.noise.NoiseModel` per
    channel (its pixel std and its spatial correlation, from the image's power spectrum).

    >>> fn = FieldNoise.gaussian([0.1], corr_px=1.0)
    >>> z = fn.draw(np.random.default_rng(0), (1, 256, 256))
    >>> round(float(z.std()), 2)
    0.1
    """

    models: tuple[NoiseModel, ...]

    @classmethod
    def gaussian(cls, sigmas: Sequence[float], corr_px: float = 0.0) -> FieldNoise:
        """Noise of pixel std ``sigmas[c]``: white, or white blurred by a Gaussian of
        ``corr_px`` pixels."""
        if corr_px <= 0:
            return cls(tuple(NoiseModel.white(float(s)) for s in sigmas))
        unit = NoiseModel.from_spectrum(1.0, float(corr_px), 0.0, "given")
        return cls(tuple(NoiseModel.from_spectrum((float(s) / unit.sigma) ** 2, float(corr_px),
                                                  0.0, "given") for s in sigmas))

    @classmethod
    def from_dicts(cls, dicts: Sequence[dict]) -> FieldNoise:
        """From the ``noise`` list of the bandwidth evidence (``NoiseModel.to_dict``)."""
        return cls(tuple(NoiseModel(**d) for d in dicts))

    @property
    def sigma(self) -> np.ndarray:
        """Per-channel pixel standard deviation."""
        return np.array([m.sigma for m in self.models])

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of ``shape`` ``(..., C, H, W)`` with each channel's covariance."""
        lead, (c, h, w) = shape[:-3], shape[-3:]
        if c != len(self.models):
            raise ValueError(f"{len(self.models)} channel noise models for {c} channels")
        out = np.empty((int(np.prod(lead, dtype=int)), c, h, w))
        for k in range(out.shape[0]):
            for ch, m in enumerate(self.models):
                out[k, ch] = m.sample((h, w), rng)
        return out.reshape(shape)

    def to_dict(self) -> dict:
        return {"channels": [m.to_dict() for m in self.models]}


def member_data(fields: np.ndarray, noise: FieldNoise, n_members: int, seed: int
                ) -> np.ndarray:
    """Antithetic noise-resampled copies ``(E, C, H, W)`` of one tile's ``(C, H, W)`` fields.

    Members ``2k`` and ``2k + 1`` are ``y + z_k`` and ``y - z_k``, ``z_k`` drawn from
    ``noise`` with ``numpy.random.default_rng(seed)``; a tile's members depend only on its
    fields and its seed.

    >>> m = member_data(np.zeros((1, 4, 4)), FieldNoise.gaussian([0.1]), 2, 0)
    >>> m.shape, bool(np.allclose(m.mean(axis=0), 0.0))
    ((2, 1, 4, 4), True)
    """
    y = np.asarray(fields, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return np.concatenate([_pair(y, noise, rng) for _ in range(n_members // 2)])


def _pair(y: np.ndarray, noise: FieldNoise, rng: np.random.Generator) -> np.ndarray:
    """The next antithetic pair ``(y + z, y - z)`` of ``y`` ``(C, H, W)`` from ``rng``: pairs
    drawn one after another from one generator equal those :func:`member_data` draws."""
    z = noise.draw(rng, y.shape)
    return np.stack([y + z, y - z])


def closed_form_scaled(fields: np.ndarray, model: LinearResidualModel, px: float,
                       delta_um: float, window_um: float, factor: float, est, *,
                       weight: np.ndarray | None = None) -> np.ndarray:
    """The closed-form ``lam`` of ``(N, C, H, W)`` fields at ``(delta, s)`` times ``factor``
    (the radius kept at least 1.5 px); ``weight`` (``(N, H, W)``, e.g. the nuclei) multiplies
    the least-squares weight."""
    terms = linear_terms(fields, model, max(delta_um * factor, 1.5 * px), px,
                         backend=est.backend)
    if weight is not None:
        terms.weight = terms.weight * weight
    lam, _ = local_least_squares(terms, window_um * factor, px, lambda_min=est.lambda_min,
                                 lambda_max=est.lambda_max)
    return lam


def smoothing_bias(fields: np.ndarray, model: LinearResidualModel, px: float, delta_um: float,
                   window_um: float, factor: float, est, *,
                   weight: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel size of the smoothing bias of the closed-form map at ``(delta, s)``, for
    ``(N, C, H, W)`` fields: ``|lam(j delta, j s) - lam(delta / j, s / j)| / (j^2 - j^-2)``.

    Where either map is undefined the term is 0; ``factor`` 1 gives zeros.

    >>> from pipeline.config import EstimatorSettings
    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((1, 32, 32), 0.35), np.full((1, 32, 32), 0.3)], axis=1)
    >>> b = smoothing_bias(f, ChromatinModel(), 0.02, 0.08, 0.08, 1.2, EstimatorSettings())
    >>> b.shape, float(np.abs(b).max()) < 1e-6
    ((1, 32, 32), True)
    """
    if factor == 1.0:
        return np.zeros((np.shape(fields)[0],) + np.shape(fields)[-2:])
    diff = _step_difference(fields, model, px, delta_um, window_um, est, (factor, 1 / factor),
                            weight)
    return diff / (factor**2 - factor**-2)


def _step_difference(fields: np.ndarray, model: LinearResidualModel, px: float,
                     delta_um: float, window_um: float, est, factors: tuple[float, float],
                     weight: np.ndarray | None) -> np.ndarray:
    """``|lam(j1 delta, j1 s) - lam(j2 delta, j2 s)|`` for ``factors`` ``(j1, j2)``; 0 where
    either closed-form map is undefined."""
    f = np.asarray(fields, dtype=np.float64)
    one, two = (closed_form_scaled(f, model, px, delta_um, window_um, j, est, weight=weight)
                for j in factors)
    return np.nan_to_num(np.abs(one - two))


WINDOW_BIAS_SCALE = 2.25
"""``k`` of :func:`window_bias`: the closed form's error at its bandwidth is about 2.25 times
what the ``s^2`` law extrapolates from one step wider (chosen on the stress suite's tuning
seeds, docs/uncertainty.md)."""


def window_bias(fields: np.ndarray, model: LinearResidualModel, px: float, delta_um: float,
                window_um: float, factor: float, est, *, weight: np.ndarray | None = None,
                scale: float = WINDOW_BIAS_SCALE,
                at_bandwidth: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel size of the error that the bandwidth ``(delta, s)`` causes in the closed
    form, for ``(N, C, H, W)`` fields: ``scale |lam(j delta, j s) - lam(delta, s)| / (j^2 - 1)``
    with ``j = factor``.

    With ``scale`` 1 this is the ``s^2`` law's bias from a forward step. Unlike the symmetric
    difference of :func:`smoothing_bias` it never uses the narrower, noisier map, whose own
    noise error would be read as bias; and the scale covers the part of the error that grows
    more slowly than ``s^2`` or not at all. Where either map is undefined the term is 0;
    ``factor`` 1 gives zeros. ``at_bandwidth``: the unbounded map at ``(delta, s)`` where the
    caller has it already (not refitted then).

    >>> from pipeline.config import EstimatorSettings
    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((1, 32, 32), 0.35), np.full((1, 32, 32), 0.3)], axis=1)
    >>> b = window_bias(f, ChromatinModel(), 0.02, 0.08, 0.08, 1.5, EstimatorSettings())
    >>> b.shape, float(np.abs(b).max()) < 1e-6
    ((1, 32, 32), True)
    """
    if factor == 1.0:
        return np.zeros((np.shape(fields)[0],) + np.shape(fields)[-2:])
    f = np.asarray(fields, dtype=np.float64)
    if at_bandwidth is None:
        at_bandwidth = closed_form_scaled(f, model, px, delta_um, window_um, 1.0, est,
                                          weight=weight)
    wide = closed_form_scaled(f, model, px, delta_um, window_um, factor, est, weight=weight)
    return scale * np.nan_to_num(np.abs(wide - at_bandwidth)) / (factor**2 - 1)


ATTENUATION_CLIP = (0.25, 0.95)
"""Bounds of the per-smoothing attenuation ``a`` of :func:`attenuation_bias` (chosen on the
stress suite's tuning seeds, docs/uncertainty.md): ``1 / a`` at most 4."""


def _blur(x: np.ndarray, s_px: float) -> np.ndarray:
    """``x`` ``(N, H, W)`` smoothed by a Gaussian of ``s_px`` per tile over its defined pixels
    only (a normalised convolution); undefined pixels stay undefined."""
    bad = ~np.isfinite(x)
    sigma = [0.0, s_px, s_px]
    num = gaussian_filter(np.where(bad, 0.0, x), sigma, mode="reflect", truncate=3.0)
    den = gaussian_filter((~bad).astype(np.float64), sigma, mode="reflect", truncate=3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = num / den
    y[bad] = np.nan
    return y


def _two_differences(x: np.ndarray, s_px: float) -> tuple[np.ndarray, np.ndarray]:
    """``x - G x`` and ``G x - G G x`` for the Gaussian ``G`` of ``s_px``."""
    g1 = _blur(x, s_px)
    g2 = _blur(g1, s_px)
    return x - g1, g1 - g2


def attenuation_bias(lam: np.ndarray, members: np.ndarray, window_px: float, *,
                     clip: tuple[float, float] = ATTENUATION_CLIP) -> np.ndarray:
    """Per-pixel size of a smoothing bias that saturates in the window, from the map alone.

    The closed form smooths lambda about as a Gaussian ``G`` of the window ``s`` does. One more
    smoothing multiplies each wavelength of the map by the same factor ``a`` the window
    applied, so with ``D1 = lam - G lam`` and ``D2 = G lam - G G lam``, ``a^2`` is the power
    of ``D2`` over that of ``D1`` (both averaged over ``G``, the members' noise power in each
    subtracted), and the bias is ``D1 / a``: no power law in ``s``, which matters where the
    window has already flattened the map's contrast and the ``s^2`` law of
    :func:`window_bias` sees too little. ``lam`` ``(N, H, W)`` is the unbounded map at the
    bandwidth, ``members`` ``(N, E, H, W)`` its noise-resampled refits.

    >>> lam = np.ones((1, 24, 24)); m = np.ones((1, 2, 24, 24))
    >>> float(np.abs(attenuation_bias(lam, m, 3.0)).max())
    0.0
    """
    _, p1, a2 = attenuation_parts(lam, members, window_px, clip=clip)
    return np.sqrt(np.nan_to_num(p1 / a2))


def attenuation_parts(lam: np.ndarray, members: np.ndarray, window_px: float, *,
                      clip: tuple[float, float] = ATTENUATION_CLIP
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`attenuation_bias` is made of: ``D1`` per pixel, its power ``<D1^2>`` less
    the members' (averaged over ``G``, at least 0) and the clipped ``a^2``."""
    d1, d2 = _two_differences(lam, window_px)
    n1 = np.zeros_like(d1)
    n2 = np.zeros_like(d2)
    for k in range(members.shape[1]):
        e1, e2 = _two_differences(members[:, k] - lam, window_px)
        n1 += e1**2
        n2 += e2**2
    k = members.shape[1]
    p1 = np.clip(_blur(d1**2, window_px) - _blur(n1 / k, window_px), 0.0, None)
    p2 = np.clip(_blur(d2**2, window_px) - _blur(n2 / k, window_px), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        a2 = np.clip(p2 / np.maximum(p1, np.finfo(float).tiny), clip[0] ** 2, clip[1] ** 2)
    return d1, p1, a2


def combine_std(members: np.ndarray, estimate: np.ndarray, bias: np.ndarray, *,
                noise_bias: bool = True, smooth_px: float = 0.0,
                geometric: bool = False) -> np.ndarray:
    """``sqrt(spread^2 + bias^2 + noise_bias^2)`` from members ``(N, E, H, W)``, the estimate
    on the data ``(N, H, W)`` and the bias ``(N, H, W)``.

    With a handful of members the per-pixel variance is itself noisy (3 degrees of freedom for
    4 members), and an interval from a noisy variance covers less than its nominal level. The
    noise variance of lambda varies on the scale of the rate window, so ``smooth_px`` > 0
    averages the squared spread and noise bias over a Gaussian of that width (pixels).

    ``geometric`` averages their logarithm instead (over the finite pixels only) and corrects
    the mean log of a chi-square variance of ``E - 1`` degrees of freedom
    (:func:`log_variance_bias`). An arithmetic mean lets the large variance at an image or
    nucleus edge spread a window inward, where the error is small; a geometric one does not.

    >>> m = np.array([[[[1.0]], [[3.0]]]])          # two members: 1 and 3
    >>> combine_std(m, np.array([[[2.0]]]), np.zeros((1, 1, 1))).round(3).tolist()
    [[[1.414]]]
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        noise = np.nanvar(members, axis=1, ddof=1)
        if noise_bias:
            noise = noise + np.nan_to_num(np.nanmean(members, axis=1) - estimate) ** 2
        if smooth_px > 0:
            bad = ~np.isfinite(noise)
            sigma = [0.0, smooth_px, smooth_px]
            if geometric:
                logv = np.log(np.maximum(np.where(bad, 1.0, noise), np.finfo(float).tiny))
                noise = np.exp(_blur(np.where(bad, np.nan, logv), smooth_px)
                               - log_variance_bias(members.shape[1] - 1))
            else:
                noise = gaussian_filter(np.where(bad, 0.0, noise), sigma, mode="reflect",
                                        truncate=3.0)
            noise[bad] = np.nan
        total = noise + np.asarray(bias) ** 2
    return np.sqrt(total)


def log_variance_bias(dof: int) -> float:
    """``E ln(v / sigma^2)`` for a sample variance ``v`` of ``dof`` degrees of freedom
    (``v ~ sigma^2 chi2_dof / dof``): ``psi(dof / 2) + ln(2 / dof)``.

    >>> round(log_variance_bias(3), 3)
    -0.369
    """
    return float(digamma(dof / 2) + np.log(2 / dof))


def unbounded(est):
    """``est`` without the bounds on lambda (for the spread and bias maps of the std)."""
    return est.model_copy(update={"lambda_min": -np.inf, "lambda_max": np.inf})


def closed_form_std(tiles: np.ndarray, lam: np.ndarray, model: LinearResidualModel, px: float,
                    delta_um: float, window_um: float, est, unc, noise: FieldNoise,
                    seeds: Sequence[int], *, weight: np.ndarray | None = None) -> np.ndarray:
    """The std of the closed-form ``lam`` ``(N, H, W)`` of ``(N, C, H, W)`` tiles.

    Members are drawn and refitted in closed form one antithetic pair at a time (memory: two
    copies of the batch); tile ``n``'s pairs are those of :func:`member_data` with
    ``seeds[n]``. The bias term is the larger of :func:`window_bias` at ``unc.bias_factor``
    and :func:`attenuation_bias` (unless ``unc.attenuation_bias`` is off). Members and
    bias maps are not clipped to the
    lambda bounds: an estimate at a bound keeps the spread of the estimator, never a std of 0.
    """
    est = unbounded(est)
    n, c, h, w = tiles.shape
    e = unc.ensemble_size
    members = np.empty((n, e, h, w))
    rngs = [np.random.default_rng(int(sd)) for sd in seeds]
    pw = None if weight is None else np.repeat(weight, 2, axis=0)
    for k in range(0, e, 2):
        pair = np.stack([_pair(np.asarray(tiles[i], np.float64), noise, rngs[i])
                         for i in range(n)]).reshape(n * 2, c, h, w)
        members[:, k : k + 2] = closed_form_scaled(pair, model, px, delta_um, window_um, 1.0,
                                                   est, weight=pw).reshape(n, 2, h, w)
    at = closed_form_scaled(np.asarray(tiles, np.float64), model, px, delta_um, window_um, 1.0,
                            est, weight=weight)
    bias = window_bias(tiles, model, px, delta_um, window_um, unc.bias_factor, est,
                       weight=weight, at_bandwidth=at)
    if unc.attenuation_bias:
        bias = np.maximum(bias, attenuation_bias(at, members, window_um / px))
    return combine_std(members, lam, bias, noise_bias=unc.noise_bias,
                       smooth_px=unc.variance_smoothing * window_um / px, geometric=True)


def coverage(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, ok: np.ndarray, *,
             border_px: int = 16, z: float = 1.645) -> float:
    """Fraction of ``ok`` pixels at least ``border_px`` from the border with
    ``|truth - mean| <= z * std`` (the nominal 90 % interval; target 0.85-0.95).

    >>> coverage(np.zeros((40, 40)), np.ones((40, 40)), np.zeros((40, 40)),
    ...          np.ones((40, 40), bool), border_px=4)
    1.0
    """
    keep = np.asarray(ok, bool) & np.isfinite(mean) & np.isfinite(std)
    keep = keep.copy()
    if border_px > 0:
        b = border_px
        keep[:b] = keep[-b:] = False
        keep[:, :b] = keep[:, -b:] = False
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(truth[keep] - mean[keep]) <= z * std[keep]))
