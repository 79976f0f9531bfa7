"""Two-channel self-calibration: the heterochromatin (scale, offset) of least residual.

Part of the intensity calibration from the image (:mod:`pipeline.calibration`, which chooses
when it runs and records the result; ``docs/calibration.md`` states the assumptions and the
measurements behind the constants below).

**Two channels: physics-informed self-calibration.** The steady state cancels two large terms:
the chemical potential is nearly flat, so ``lap(mu_d)`` is of the order of the reaction term,
while its parts (``lap(phi_e)`` and ``lap(g(phi_h))``) are about 100 times larger at the
chromatin domains. A wrong heterochromatin scale or offset (relative to the chromatin channel)
breaks that cancellation and leaves domain-shaped residual that no smooth λ explains. The
criterion is the noise-free energy of the residual ``R = B - A lam_s`` left by the local fit,
estimated from a **noise split** (``mean(R1 R2)`` over two recorrupted halves whose noise is
independent, drawn from a Poisson-Gaussian noise model fitted to the image), in chromatin-field
units. It does not rescale with the candidate calibration: a relative residual does (it came
out *lower* for wrong scales), and a plain residual energy is dominated by the noise, which
grows with the heterochromatin scale. The chromatin channel's own offset and scale change λ's
pattern very little (measured, docs/calibration.md); they are set from the dark level and a
stated assumption (:data:`DENSE_CHROMATIN`), and the heterochromatin scale and offset are
searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.config import PHI_MAX, Calibration, ChannelRole
from pipeline.estimate.bandwidth import central_crop
from pipeline.physics.observation import AUTO_PERCENTILES

__all__ = [
    "CRITERION_DELTA_UM",
    "CRITERION_WINDOW_UM",
    "CROP_PX",
    "DENSE_CHROMATIN",
    "MIN_CONTRAST",
    "MIN_INTERIOR_PX",
    "noise_model",
    "residual_energy",
    "criterion_field_px",
    "scale_contrast",
    "self_calibrate",
]

CRITERION_DELTA_UM = 0.56
"""Mollifier radius of the self-calibration criterion (µm; at least 6 px). Chosen on tuning
seeds: the domain-scale residual of a wrong calibration survives large radii while the noise
falls fast (docs/calibration.md)."""
CRITERION_WINDOW_UM = 0.3
"""Rate window of the local fit inside the criterion (µm; at least 3 px)."""
DENSE_CHROMATIN = PHI_MAX
"""Assumed chromatin fraction c of the densest chromatin (the 99.5th percentile of the
chromatin channel above its dark level): packing at the default phi_max
(:data:`pipeline.config.PHI_MAX`, 0.7; a ``physics.phi_max`` set by the user does not change
it). It sets the chromatin scale, which moves λ's level, not its pattern
(docs/calibration.md)."""
MIN_CONTRAST = 0.2
"""Identifiability threshold: the criterion must rise by at least this fraction of its value
at the optimum when the heterochromatin scale moves by :data:`PROBE_STEP` either way."""
PROBE_STEP = 0.1
"""Relative step of the heterochromatin scale at which the contrast is measured."""
MAX_UNPHYSICAL = 0.02
"""Largest fraction of criterion pixels allowed outside 0 <= phi_h <= c (a candidate
calibration with more is rejected: it would give λ < 0 or no euchromatin)."""
MIN_INTERIOR_PX = 64
"""The criterion needs this many pixels (a side) inside the mollifier's border band."""
CROP_PX = 256
"""Side of the central crop the criterion is evaluated on (bounds its cost)."""
_SCALE_GRID = np.exp(np.linspace(np.log(0.2), np.log(2.0), 15))
_OFFSET_GRID = np.linspace(-0.2, 0.2, 5)


def noise_model(channel: np.ndarray, nbins: int = 24) -> tuple[float, float]:
    """``(a, b)`` of the Poisson-Gaussian noise model ``var(I) = a I + b`` of one channel.

    From the diagonal Haar detail of 2 x 2 blocks (noise variance, little structure), binned
    by block mean, a robust (MAD) variance per bin and a weighted straight-line fit.
    """
    x = np.asarray(channel, dtype=np.float64)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    p, q, r, s = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    d = ((p - q - r + s) / 2).ravel()
    m = ((p + q + r + s) / 4).ravel()
    edges = np.unique(np.quantile(m, np.linspace(0, 1, nbins + 1)))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    ms, vs, ns = [], [], []
    for i in range(len(edges) - 1):
        dd = d[idx == i]
        if dd.size < 20:
            continue
        mad = 1.4826 * np.median(np.abs(dd - np.median(dd)))
        ms.append(m[idx == i].mean())
        vs.append(mad**2)
        ns.append(dd.size)
    if len(ms) < 2:
        v = float(np.var(d))
        return 0.0, v
    ms_a, vs_a, ns_a = np.asarray(ms), np.asarray(vs), np.asarray(ns)
    wgt = np.sqrt(ns_a) / np.maximum(vs_a, 1e-12)
    design = np.stack([ms_a, np.ones_like(ms_a)], 1) * wgt[:, None]
    a, b = np.linalg.lstsq(design, vs_a * wgt, rcond=None)[0]
    if a < 0:  # no signal dependence resolved: a constant variance
        a, b = 0.0, float(np.average(vs_a, weights=ns_a))
    return float(a), float(b)


def residual_energy(halves: np.ndarray, weight: np.ndarray, pixel_size_um: float,
                    model: Any, delta_um: float, window_um: float) -> float:
    """Noise-split residual energy ``mean(w R1 R2) / mean(w)`` of two field halves.

    ``halves`` is (2, 2, Y, X): two recorrupted copies of ``[phi_h, phi_w]``.
    """
    from pipeline.estimate.closed_form import linear_terms, local_least_squares

    terms = linear_terms(halves, model, delta_um, pixel_size_um)
    lam, _ = local_least_squares(terms, window_um, pixel_size_um,
                                 lambda_min=-1e6, lambda_max=1e6)
    res = terms.b - terms.a * lam
    w = terms.weight * weight
    if w.sum() < 16:
        raise ValueError("too few pixels inside the nucleus to self-calibrate")
    return float(np.sum(w * res[0] * res[1]) / w.sum())


def criterion_field_px(pixel_size_um: float) -> int:
    """The smallest field side (px) the criterion needs: two mollifier radii of border band
    plus :data:`MIN_INTERIOR_PX`."""
    return int(2 * max(CRITERION_DELTA_UM, 6 * pixel_size_um) / pixel_size_um) + MIN_INTERIOR_PX


def scale_contrast(crit: Any, a_h: float, best: float) -> float:
    """The identifiability figure at the heterochromatin scale ``a_h`` whose criterion is
    ``best``: the criterion's rise at a :data:`PROBE_STEP` step of the scale either way,
    relative to ``best``. ``crit(a)`` evaluates the criterion at scale ``a``. A probe outside
    the physical range (inf) does not count: the contrast is measured on the side that stays
    physical; none (or an infinite optimum) means no figure at all (0)."""
    probes = [crit(a_h * (1 + PROBE_STEP)), crit(a_h / (1 + PROBE_STEP))]
    finite = [q for q in probes if np.isfinite(q)]
    return (float((min(finite) - best) / max(abs(best), 1e-30))
            if finite and np.isfinite(best) else 0.0)


def _split_noise(data: np.ndarray, sig: np.ndarray, mask: np.ndarray | None,
                 rng: np.random.Generator) -> np.ndarray:
    """The split's noise ``z`` for the crop ``data`` (C, Y, X) with local standard deviations
    ``sig`` (the Poisson-Gaussian model). White, as the camera's, unless a channel's noise is
    spatially correlated (:func:`pipeline.estimate.noise.estimate_noise_model`: rendered
    localisations): then that channel's ``z`` has the fitted correlation, scaled to ``sig``,
    so that the halves' noise is independent there too (fitted on ``mask``, the crop's
    nuclei, when given). All-white crops draw exactly as before."""
    from pipeline.estimate.noise import estimate_noise_model

    models = [estimate_noise_model(ch, mask if mask is not None and mask.any() else None)
              for ch in data]
    if all(m.is_white for m in models):
        return rng.normal(size=data.shape) * sig
    out = np.empty(data.shape)
    for c, (m, s) in enumerate(zip(models, sig, strict=True)):
        if m.is_white:
            out[c] = rng.normal(size=s.shape) * s
        else:  # the level of the spectral fit (the finest-scale details see only part of
            # correlated noise), the Poisson-Gaussian model's variation over the crop
            out[c] = m.sample(s.shape, rng) * (s / np.sqrt(np.mean(s**2)))
    return out


class _Problem:
    """The two-channel criterion as a function of the heterochromatin (scale, offset)."""

    def __init__(self, planes: np.ndarray, roles: Sequence[ChannelRole], pixel_size_um: float,
                 model: Any, offsets: Sequence[float], foreground: np.ndarray | None,
                 seed: int, chromatin_scale: float | None = None) -> None:
        from scipy import ndimage

        data = central_crop(np.asarray(planes), CROP_PX).astype(np.float64)  # the crop, not the plane
        fg = None if foreground is None else central_crop(np.asarray(foreground, bool), CROP_PX)
        ic, ih = roles.index("chromatin"), roles.index("heterochromatin")
        rng = np.random.default_rng(seed)
        sig = []
        for ch in data:
            a, b = noise_model(ch)
            var = a * ch + b
            sig.append(np.sqrt(np.clip(var, 0.25 * max(float(np.median(var)), 1e-12), None)))
        z = _split_noise(data, np.stack(sig), fg, rng)
        halves = np.stack([data + z, data - z])  # (2, C, Y, X), independent noise
        self.px, self.model = pixel_size_um, model
        self.delta = max(CRITERION_DELTA_UM, 6 * pixel_size_um)
        self.window = max(CRITERION_WINDOW_UM, 3 * pixel_size_um)
        o_c, o_h = offsets[ic], offsets[ih]
        top_c = float(np.percentile(data[ic], AUTO_PERCENTILES[1])) - o_c
        top_h = float(np.percentile(data[ih], AUTO_PERCENTILES[1])) - o_h
        if not (top_c > 0 and top_h > 0):
            raise ValueError("a channel has no signal above its dark level")
        # the assumption (densest chromatin at DENSE_CHROMATIN), or a scale the user gave
        self.scale_c = DENSE_CHROMATIN / top_c if chromatin_scale is None else chromatin_scale
        self.unit_h = 1.0 / top_h  # het intensity above its dark level, 99.5th pct = 1
        self.o_h0 = o_h
        self.c = (halves[:, ic] - o_c) * self.scale_c
        self.u_h = (halves[:, ih] - o_h) * self.unit_h
        weight = np.ones(data.shape[-2:])
        if fg is not None:  # the model holds inside the nucleus, not at its edge
            dist = ndimage.distance_transform_edt(fg) * pixel_size_um
            weight = (dist > self.delta).astype(float)
        self.weight = weight
        self.offsets = (o_c, o_h)
        self.ic, self.ih = ic, ih

    def _fields(self, a_h: float, b_h: float, b_c: float) -> tuple[np.ndarray, float]:
        """The two halves' fields ``(2, 2, Y, X)`` and the fraction of criterion pixels
        outside ``0 <= phi_h <= c`` (of the halves' mean)."""
        f = np.empty((2, 2) + self.c.shape[-2:])
        f[:, 1] = 1.0 - self.c - b_c
        f[:, 0] = a_h * self.u_h + b_h
        ph, c = f[:, 0].mean(0), 1.0 - f[:, 1].mean(0)
        inside = self.weight > 0
        bad = ((ph < -0.02) | (ph > c + 0.02))[inside].mean() if inside.any() else 1.0
        return f, float(bad)

    def unphysical(self, a_h: float, b_h: float, b_c: float = 0.0) -> float:
        """Fraction of criterion pixels outside ``0 <= phi_h <= c``."""
        return self._fields(a_h, b_h, b_c)[1]

    def __call__(self, a_h: float, b_h: float, b_c: float = 0.0) -> float:
        f, bad = self._fields(a_h, b_h, b_c)
        if bad > MAX_UNPHYSICAL:
            return float("inf")
        return residual_energy(f, self.weight, self.px, self.model, self.delta, self.window)

    def calibration(self, a_h: float, b_h: float, b_c: float = 0.0
                    ) -> tuple[Calibration, Calibration]:
        """Channel calibrations (in role order chromatin, heterochromatin)."""
        s_h = a_h * self.unit_h
        return (Calibration(offset=self.offsets[0] - b_c / self.scale_c, scale=self.scale_c),
                Calibration(offset=self.o_h0 - b_h / s_h, scale=s_h))


def self_calibrate(planes: np.ndarray, roles: Sequence[ChannelRole], pixel_size_um: float,
                   model: Any, offsets: Sequence[float], *, fit_offset: bool = True,
                   foreground: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Two-channel self-calibration: the heterochromatin (scale, offset) of least residual.

    Parameters
    ----------
    planes : (2, Y, X)
        Raw intensities of one plane.
    roles
        The channel roles in C order (one chromatin, one heterochromatin).
    offsets
        Dark level per channel (C order). The chromatin channel keeps its offset; the
        heterochromatin offset is searched around it when ``fit_offset``.
    foreground
        Nuclear pixels (the criterion uses those deeper than its mollifier radius).

    Returns
    -------
    dict
        ``calibration`` (per channel, C order), ``identifiable`` (bool), ``contrast`` (the
        identifiability figure), ``at_edge``, ``criterion`` and ``evaluations``.
    """
    from scipy.optimize import minimize

    prob = _Problem(planes, roles, pixel_size_um, model, offsets, foreground, seed)
    evals: dict[tuple[float, float, float], float] = {}

    def crit(a: float, b: float, bc: float = 0.0) -> float:
        key = (round(float(a), 6), round(float(b), 6), round(float(bc), 6))
        if key not in evals:
            evals[key] = prob(a, b, bc)
        return evals[key]

    # coarse: the scale at offset 0, then a 2-D neighbourhood, then Nelder-Mead on log-scale
    grid = DENSE_CHROMATIN * _SCALE_GRID
    j = int(np.argmin([crit(a, 0.0) for a in grid]))
    a0, b0 = grid[j], 0.0
    if fit_offset:
        near = grid[max(0, j - 2):j + 3]
        vals = {(a, b): crit(a, b) for a in near for b in _OFFSET_GRID}
        a0, b0 = min(vals, key=vals.get)

    # without a measured dark level, the chromatin offset is searched too, within c <= 1 at
    # the 99.5th percentile (the criterion is nearly flat along it: it moves λ very little)
    bc_max = (1.0 - DENSE_CHROMATIN) if fit_offset else 0.0

    def unpack(p: np.ndarray) -> tuple[float, float, float]:
        return (float(np.exp(p[0])), float(p[1]) if fit_offset else 0.0,
                float(np.clip(p[2], 0.0, bc_max)) if fit_offset else 0.0)

    start = np.array([np.log(a0), b0, 0.0])[: 3 if fit_offset else 1]
    simplex = None
    if fit_offset:
        simplex = np.array([start, start + [0.1, 0, 0], start + [0, 0.05, 0],
                            start + [0, 0, bc_max / 2]])
    res = minimize(lambda p: crit(*unpack(p)), start, method="Nelder-Mead",
                   options={"xatol": 2e-3, "fatol": 0.0, "maxfev": 60 if fit_offset else 12,
                            "initial_simplex": simplex})
    a_h, b_h, b_c = unpack(res.x)
    best = crit(a_h, b_h, b_c)
    contrast = scale_contrast(lambda a: crit(a, b_h, b_c), a_h, best)
    at_edge = bool(a_h <= grid[0] * 1.001 or a_h >= grid[-1] * 0.999
                   or (fit_offset and abs(b_h) >= _OFFSET_GRID[-1] * 0.999))
    identifiable = bool(contrast >= MIN_CONTRAST and not at_edge and best > 0)
    cal = prob.calibration(a_h, b_h, b_c)
    by_role = {"chromatin": cal[0], "heterochromatin": cal[1]}
    return {
        "calibration": tuple(by_role[r] for r in roles),
        "identifiable": identifiable,
        "contrast": contrast,
        "at_edge": at_edge,
        "residual_energy": best if np.isfinite(best) else None,
        "heterochromatin_fraction_top": a_h + b_h,
        "chromatin_offset_shift": b_c,
        "evaluations": len(evals),
        "criterion": (f"noise-split residual energy of the local fit (delta {prob.delta:.3g} um, "
                      f"window {prob.window:.3g} um) over the heterochromatin scale and offset; "
                      f"contrast = rise at a {PROBE_STEP:.0%} scale step / value at the optimum "
                      f"(identifiable at >= {MIN_CONTRAST})"),
    }
