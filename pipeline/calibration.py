"""Intensity calibration from the image itself (``--calibration image``, the default).

Each channel is calibrated as ``field = (intensity - offset) * scale`` (the observation models
are in :mod:`pipeline.physics.observation`). Most labs have no calibration sample, so
chromarate takes what it can from the image and says, per image, where every number came from
and whether the image determined it. ``docs/calibration.md`` states every assumption and the
measurements behind the constants below.

**Dark level (offset).** In order of preference: a dark frame the user passes
(``--dark-frame``: its per-channel median), or the background outside the nuclei (pixels under
an Otsu threshold of the smoothed image, when the image has a real background: see
:func:`background_level`). Outside the nucleus there is no chromatin, so the background is
zero occupancy in both channels.

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

**One channel:** no criterion found identifies the scale or offset (the residual energy falls
monotonically towards smaller fields). λ's pattern is robust to calibration; its level is not.
The percentile rule is used for the scale (offset from the dark level when there is one), and
the record and the log say that λ's level is not identified.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import INTERFACE_LENGTH_UM, PHI_MAX, Calibration, ChannelRole
from pipeline.physics.observation import AUTO_PERCENTILES, auto_calibration

__all__ = [
    "CRITERION_DELTA_UM",
    "CRITERION_WINDOW_UM",
    "DENSE_CHROMATIN",
    "MIN_CONTRAST",
    "background_level",
    "dark_frame_offsets",
    "image_calibration",
    "noise_model",
    "residual_energy",
    "self_calibrate",
]

log = logging.getLogger(__name__)

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
SINGLE_CHANNEL_MEDIAN = 0.5
"""One channel with a measured dark level: the nuclear median of φ_h is taken as this fraction
of φ_max (a nucleus balanced between methylation and acetylation: median λ near 1). An
assumption, not a measurement: λ is then reported relative to it."""
MAX_BACKGROUND_NOISE_RATIO = 0.3
"""A background's pixel-noise variance must be below this fraction of the nucleus's."""
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


def background_level(planes: np.ndarray, pixel_size_um: float) -> dict[str, Any] | None:
    """Dark level of each channel from the background outside the nuclei, or None.

    The channels are normalised and summed, smoothed (Gaussian, 0.3 µm or 2 px) and split by
    Otsu's threshold. The image has a background when at least 5 % of its pixels lie below
    the threshold and the background is dark: the gap between the medians of the two classes
    is at least 10 times the background's own robust spread (smoothed). Returns ``offsets``
    (per channel, the median of the raw background pixels), ``fraction`` and ``foreground``
    (bool mask), or None.
    """
    from skimage.filters import gaussian, threshold_otsu

    data = np.asarray(planes, dtype=np.float64)
    lo = np.percentile(data, 1, axis=(1, 2))[:, None, None]
    hi = np.percentile(data, 99, axis=(1, 2))[:, None, None]
    norm = ((data - lo) / np.maximum(hi - lo, 1e-12)).sum(0)
    smooth = gaussian(norm, sigma=max(0.3 / pixel_size_um, 2.0), preserve_range=True)
    thr = float(threshold_otsu(smooth))
    bg = smooth < thr
    fraction = float(bg.mean())
    if fraction < 0.05 or fraction > 0.9:
        return None
    bg_vals, fg_vals = smooth[bg], smooth[~bg]
    spread = 1.4826 * np.median(np.abs(bg_vals - np.median(bg_vals)))
    gap = float(np.median(fg_vals) - np.median(bg_vals))
    if not gap > 10 * max(spread, 1e-12):
        return None
    # a dark background is (nearly) free of photon noise: its pixel noise is well below the
    # nucleus's in every channel (a dim region of chromatin is not: its noise is of the same
    # order; measured on the step-λ cases, where Otsu splits two chromatin regions)
    d = (data[:, :-1, :-1] - data[:, :-1, 1:] - data[:, 1:, :-1] + data[:, 1:, 1:]) / 2
    bg_d, fg_d = bg[:-1, :-1], ~bg[:-1, :-1]
    for ch in d:
        v_bg = np.median(np.abs(ch[bg_d] - np.median(ch[bg_d]))) ** 2
        v_fg = np.median(np.abs(ch[fg_d] - np.median(ch[fg_d]))) ** 2
        if not v_bg < MAX_BACKGROUND_NOISE_RATIO * v_fg:
            return None
    offsets = [float(np.median(ch[bg])) for ch in data]
    return {"offsets": offsets, "fraction": fraction, "foreground": ~bg,
            "separation": gap / max(spread, 1e-12)}


def dark_frame_offsets(path: str | Path, n_channels: int) -> list[float]:
    """Per-channel dark level from a dark-frame TIFF: the median of each channel.

    The frame may be (Y, X) (one level for every channel), (C, Y, X), or a stack whose first
    axis holds frames (the median over all). Raises ``ValueError`` naming the file otherwise.
    """
    import tifffile

    path = Path(path)
    try:
        arr = np.asarray(tifffile.imread(path), dtype=np.float64)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"dark frame {path}: cannot be read as a TIFF ({exc}); pass a TIFF "
                         "recorded with the shutter closed, or leave out --dark-frame") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"dark frame {path}: holds non-finite values")
    if arr.ndim == 2:
        return [float(np.median(arr))] * n_channels
    if arr.ndim == 3 and arr.shape[0] == n_channels:
        return [float(np.median(ch)) for ch in arr]
    if arr.ndim == 3 and n_channels == 1:
        return [float(np.median(arr))]
    raise ValueError(f"dark frame {path}: shape {arr.shape} does not match an image with "
                     f"{n_channels} channel(s); pass a (Y, X) frame or one with "
                     f"{n_channels} channel(s) first")


def _crop(a: np.ndarray, n: int) -> np.ndarray:
    h, w = a.shape[-2:]
    y0, x0 = max(0, (h - n) // 2), max(0, (w - n) // 2)
    return a[..., y0:y0 + n, x0:x0 + n]


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


class _Problem:
    """The two-channel criterion as a function of the heterochromatin (scale, offset)."""

    def __init__(self, planes: np.ndarray, roles: Sequence[ChannelRole], pixel_size_um: float,
                 model: Any, offsets: Sequence[float], foreground: np.ndarray | None,
                 seed: int) -> None:
        from scipy import ndimage

        data = _crop(np.asarray(planes, dtype=np.float64), CROP_PX)
        ic, ih = roles.index("chromatin"), roles.index("heterochromatin")
        rng = np.random.default_rng(seed)
        sig = []
        for ch in data:
            a, b = noise_model(ch)
            var = a * ch + b
            sig.append(np.sqrt(np.clip(var, 0.25 * max(float(np.median(var)), 1e-12), None)))
        z = rng.normal(size=data.shape) * np.stack(sig)
        halves = np.stack([data + z, data - z])  # (2, C, Y, X), independent noise
        self.px, self.model = pixel_size_um, model
        self.delta = max(CRITERION_DELTA_UM, 6 * pixel_size_um)
        self.window = max(CRITERION_WINDOW_UM, 3 * pixel_size_um)
        o_c, o_h = offsets[ic], offsets[ih]
        top_c = float(np.percentile(data[ic], AUTO_PERCENTILES[1])) - o_c
        top_h = float(np.percentile(data[ih], AUTO_PERCENTILES[1])) - o_h
        if not (top_c > 0 and top_h > 0):
            raise ValueError("a channel has no signal above its dark level")
        self.scale_c = DENSE_CHROMATIN / top_c
        self.unit_h = 1.0 / top_h  # het intensity above its dark level, 99.5th pct = 1
        self.o_h0 = o_h
        self.c = (halves[:, ic] - o_c) * self.scale_c
        self.u_h = (halves[:, ih] - o_h) * self.unit_h
        weight = np.ones(data.shape[-2:])
        if foreground is not None:  # the model holds inside the nucleus, not at its edge
            fg = _crop(np.asarray(foreground, bool), CROP_PX)
            dist = ndimage.distance_transform_edt(fg) * pixel_size_um
            weight = (dist > self.delta).astype(float)
        self.weight = weight
        self.offsets = (o_c, o_h)
        self.ic, self.ih = ic, ih

    def __call__(self, a_h: float, b_h: float, b_c: float = 0.0) -> float:
        f = np.empty((2, 2) + self.c.shape[-2:])
        f[:, 1] = 1.0 - self.c - b_c
        f[:, 0] = a_h * self.u_h + b_h
        ph, c = f[:, 0].mean(0), 1.0 - f[:, 1].mean(0)
        inside = self.weight > 0
        bad = ((ph < -0.02) | (ph > c + 0.02))[inside].mean() if inside.any() else 1.0
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
    probes = [crit(a_h * (1 + PROBE_STEP), b_h, b_c), crit(a_h / (1 + PROBE_STEP), b_h, b_c)]
    finite = [q for q in probes if np.isfinite(q)]
    # a probe outside the physical range (inf) does not count: the contrast is measured on
    # the side that stays physical; none (or an infinite optimum) means no figure at all
    contrast = (float((min(finite) - best) / max(abs(best), 1e-30))
                if finite and np.isfinite(best) else 0.0)
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


def image_calibration(planes: np.ndarray, roles: Sequence[ChannelRole], pixel_size_um: float,
                      *, phi_max: float = PHI_MAX,
                      interface_length_um: float = INTERFACE_LENGTH_UM,
                      dark_frame: str | Path | None = None, seed: int = 0
                      ) -> tuple[tuple[Calibration, ...], dict[str, Any]]:
    """Calibration of one plane from the image (and an optional dark frame).

    Returns ``(calibrations, info)``; ``info`` is JSON-able: ``mode`` ("image"), ``source``
    (the overall source: ``self-calibrated``, ``image-background``, ``dark-frame`` or
    ``percentile``), ``sources`` (per channel), ``identifiable`` (bool), ``confidence`` (the
    identifiability figure, or None), ``statement`` (what was and was not determined) and
    ``hint`` (what to pass when not identifiable).

    A two-channel image whose calibration is not identifiable (or that is too small for the
    criterion) gets the percentile rule, with ``identifiable`` False, a statement of why and a
    hint of what to pass.
    """
    from pipeline.physics.chromatin import ChromatinModel

    data = np.asarray(planes, dtype=np.float64)
    roles = tuple(roles)
    n = data.shape[0]
    bg = None
    if dark_frame is not None:
        offsets, off_source = dark_frame_offsets(dark_frame, n), "dark-frame"
        bg = background_level(data, pixel_size_um)
    else:
        bg = background_level(data, pixel_size_um)
        offsets, off_source = (bg["offsets"], "image-background") if bg else (None, None)
    fg = bg["foreground"] if bg else None
    info: dict[str, Any] = {"mode": "image", "dark_level": off_source or "none",
                            "background_fraction": bg["fraction"] if bg else 0.0}
    if n == 1:
        cal = _single_channel(data[0], offsets, phi_max, fg)
        src = off_source or "percentile"
        rule = (f"the scale maps the {AUTO_PERCENTILES[1]:g}th percentile to φ_max={phi_max:g}"
                if offsets is None else "the scale assumes a nuclear median φ_h of "
                f"{SINGLE_CHANNEL_MEDIAN:g} φ_max (median λ near 1)")
        info |= {"source": src,
                 "sources": [{"offset": src,
                              "scale": "percentile" if offsets is None else "assumed"}],
                 "identifiable": False, "confidence": None,
                 "statement": ("single channel: λ's level is not identifiable from the image "
                               f"(its pattern is robust to calibration); {rule}; offset from "
                               f"{src}"),
                 "hint": "pass --calibration OFFSET:SCALE for absolute λ"}
        log.warning("calibration: %s", info["statement"])
        return (cal,), info
    if offsets is None:
        offsets = [float(np.percentile(ch, AUTO_PERCENTILES[0])) for ch in data]
    model = ChromatinModel(phi_max, interface_length_um)
    side = min(min(data.shape[-2:]), CROP_PX)
    need = int(2 * max(CRITERION_DELTA_UM, 6 * pixel_size_um) / pixel_size_um) + MIN_INTERIOR_PX
    out, why = None, f"the field ({side} px) is too small for the criterion (needs {need} px)"
    if side >= need:
        try:
            out = self_calibrate(data, roles, pixel_size_um, model, offsets,
                                 fit_offset=off_source is None, foreground=fg, seed=seed)
        except ValueError as exc:  # e.g. too few pixels inside the nucleus
            why = str(exc)
    if out is not None:
        off_het = off_source or "self-calibrated"
        info |= {"source": "self-calibrated",
                 "sources": [{"offset": off_source or "percentile", "scale": "assumed"}
                             if r == "chromatin" else
                             {"offset": off_het, "scale": "self-calibrated"} for r in roles],
                 "identifiable": out["identifiable"], "confidence": out["contrast"],
                 "self_calibration": {k: v for k, v in out.items() if k != "calibration"}}
        if not out["identifiable"]:
            why = ("the optimum lies at the edge of the search" if out["at_edge"] else
                   f"the criterion is flat (contrast {out['contrast']:.2f} < {MIN_CONTRAST})")
    if out is None or not out["identifiable"]:
        cals = tuple(auto_calibration(ch, r, phi_max=phi_max) for ch, r in zip(data, roles,
                                                                                strict=True))
        info |= {"source": "percentile", "identifiable": False,
                 "confidence": info.get("confidence"),
                 "sources": [{"offset": "percentile", "scale": "percentile"} for _ in roles],
                 "statement": (f"two channels: the calibration is not identifiable from this "
                               f"image ({why}); the percentile rule was used, so λ's pattern "
                               "may be wrong"),
                 "hint": ("pass --calibration OFFSET:SCALE,OFFSET:SCALE from a calibration "
                          "sample")}
        return cals, info
    info["statement"] = (
        f"two channels: heterochromatin scale{'' if off_source else ' and offset'} "
        f"self-calibrated (contrast {out['contrast']:.2f}); chromatin scale assumed "
        f"(densest chromatin c={DENSE_CHROMATIN:g}), which moves λ's level, not its pattern")
    info["hint"] = "pass --calibration for absolute λ"
    log.info("calibration: %s", info["statement"])
    return out["calibration"], info


def _single_channel(plane: np.ndarray, offsets: Sequence[float] | None, phi_max: float,
                    foreground: np.ndarray | None) -> Calibration:
    """Percentile rule without a dark level; with one, the nuclear median at φ_max / 2."""
    if offsets is None:
        return auto_calibration(plane, "heterochromatin", phi_max=phi_max)
    vals = plane[foreground] if foreground is not None else plane
    mid = float(np.median(vals)) - offsets[0]
    if not mid > 0:
        raise ValueError("the heterochromatin channel has no signal above its dark level; "
                         "pass --calibration OFFSET:SCALE")
    return Calibration(offset=float(offsets[0]), scale=SINGLE_CHANNEL_MEDIAN * phi_max / mid)


def calibrate_plane(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                    pixel_size_um: float, *, reuse: dict[str, Any] | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Fields and calibration record of one plane under ``settings.calibration``.

    ``"image"`` calibrates from the image (:func:`image_calibration`); a stack is calibrated
    once, on its first plane, and later planes pass that plane's record as ``reuse``. A
    two-channel image whose calibration is not identifiable gets the percentile rule and a
    warning that says so and what to pass. ``"auto"`` and user pairs go straight to
    :func:`~pipeline.physics.observation.to_fields`. The record (stored per plane in the run)
    always holds ``source``, ``identifiable`` and ``confidence``.
    """
    from pipeline.physics.observation import to_fields

    phi_max = settings.physics.phi_max
    mode = settings.calibration_for(len(roles))
    if mode != "image":
        fields, rec = to_fields(plane, roles, mode, phi_max=phi_max)
        user = not isinstance(mode, str)
        rec |= {"mode": "user" if user else "auto", "source": "user" if user else "percentile",
                "identifiable": user, "confidence": None}
        if not user:
            rec["statement"] = "percentile rule (--calibration auto): " + rec["assumption"]
            log.warning("calibration: λ rests on the percentile rule (--calibration auto); "
                        "two-channel patterns and all absolute values may be wrong")
        return fields, rec
    if reuse is not None and reuse.get("mode") == "image":
        cals = tuple(Calibration(offset=c["offset"], scale=c["scale"])
                     for c in reuse["channels"])
        info = {k: v for k, v in reuse.items() if k not in ("channels", "model", "phi_max")}
        info["reused_from_plane"] = reuse.get("reused_from_plane", 0)
    else:
        cals, info = image_calibration(
            plane, roles, pixel_size_um, phi_max=phi_max,
            interface_length_um=settings.physics.interface_length_um,
            dark_frame=getattr(settings, "dark_frame", None), seed=settings.seed)
        if not info["identifiable"] and len(roles) == 2:
            log.warning("calibration: %s. %s", info["statement"], info["hint"])
    fields, rec = to_fields(plane, roles, cals, phi_max=phi_max)
    for ch in rec["channels"]:
        ch["source"] = info["source"]
    return fields, rec | info
