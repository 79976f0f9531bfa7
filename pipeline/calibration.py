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

**Two channels:** physics-informed self-calibration of the heterochromatin scale and offset
(:mod:`pipeline.self_calibration`, whose names are re-exported here).

**Uneven illumination** (``--flat-field``): every step above, and the fields, see the plane
divided by the smoothed, mean-one illumination of a flat-field image above its dark level
(:func:`illumination_corrected`).

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
from pipeline.estimate.bandwidth import central_crop
from pipeline.physics.observation import AUTO_PERCENTILES, auto_calibration
from pipeline.self_calibration import (
    CRITERION_DELTA_UM,
    CRITERION_WINDOW_UM,
    CROP_PX,
    DENSE_CHROMATIN,
    MIN_CONTRAST,
    criterion_field_px,
    noise_model,
    residual_energy,
    self_calibrate,
)

__all__ = [
    "CRITERION_DELTA_UM",
    "CRITERION_WINDOW_UM",
    "DENSE_CHROMATIN",
    "MIN_CONTRAST",
    "background_level",
    "dark_frame_offsets",
    "check_flat_field_size",
    "flat_field_gain",
    "illumination_corrected",
    "image_calibration",
    "noise_model",
    "residual_energy",
    "self_calibrate",
]

log = logging.getLogger(__name__)

SINGLE_CHANNEL_MEDIAN = 0.5
"""One channel with a measured dark level: the nuclear median of φ_h is taken as this fraction
of φ_max (a nucleus balanced between methylation and acetylation: median λ near 1). An
assumption, not a measurement: λ is then reported relative to it."""
MAX_BACKGROUND_NOISE_RATIO = 0.3
"""A background's pixel-noise variance must be below this fraction of the nucleus's."""


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

    data = np.asarray(planes)  # as stored: one channel at a time is held in float64 below
    norm = None
    for ch in data:
        # integers give the same percentiles as their float64 copy (computed in float64)
        lo, hi = np.percentile(ch if ch.dtype.kind in "iu" else _f64(ch), [1, 99])
        x = np.array(ch, dtype=np.float64)  # a copy, normalised in place
        x -= lo
        x /= np.maximum(hi - lo, 1e-12)
        if norm is None:
            norm = x
        else:
            norm += x
        del x
    smooth = gaussian(norm, sigma=max(0.3 / pixel_size_um, 2.0), preserve_range=True)
    del norm
    thr = float(threshold_otsu(smooth))
    bg = smooth < thr
    fraction = float(bg.mean())
    if fraction < 0.05 or fraction > 0.9:
        return None
    bg_vals = smooth[bg]  # a copy, reordered and overwritten in place (medians ignore order)
    bg_med = np.median(bg_vals, overwrite_input=True)
    spread = 1.4826 * _mad(bg_vals)
    del bg_vals
    gap = float(np.median(smooth[~bg], overwrite_input=True) - bg_med)
    del smooth
    if not gap > 10 * max(spread, 1e-12):
        return None
    # a dark background is (nearly) free of photon noise: its pixel noise is well below the
    # nucleus's in every channel (a dim region of chromatin is not: its noise is of the same
    # order; measured on the step-λ cases, where Otsu splits two chromatin regions)
    bg_d, fg_d = bg[:-1, :-1], ~bg[:-1, :-1]
    for ch in data:
        x = _f64(ch)
        d = x[:-1, :-1] - x[:-1, 1:]  # (x00 - x01 - x10 + x11) / 2, in place
        d -= x[1:, :-1]
        d += x[1:, 1:]
        d /= 2
        del x
        v_bg, v_fg = _mad(d[bg_d]) ** 2, _mad(d[fg_d]) ** 2
        del d
        if not v_bg < MAX_BACKGROUND_NOISE_RATIO * v_fg:
            return None
    offsets = [float(np.median(_f64(ch[bg]))) for ch in data]
    return {"offsets": offsets, "fraction": fraction, "foreground": ~bg,
            "separation": gap / max(spread, 1e-12)}


FLAT_SMOOTH_PX = 4.0
"""Gaussian σ (pixels) that smooths a flat field before it divides the image. Illumination
varies over tens of micrometres; the smoothing removes the flat's own photon noise (a flat of
3000 photons per pixel has 1.8 % pixel noise, 0.13 % after it) at a scale far below the
mollifier's radius (10-18 px), so no structure the fit sees is taken from or added to the
image."""
FLAT_MIN_GAIN = 0.1
"""A flat field that falls below this fraction of its mean anywhere (after its dark level) is
refused: dividing by it would multiply the image's noise tenfold there."""


def read_flat_field(path: str | Path, n_channels: int, shape_yx: tuple[int, int]
                    ) -> np.ndarray:
    """A flat-field TIFF as ``(C, Y, X)`` float32, frames averaged.

    Accepted: ``(Y, X)`` (one illumination for every channel), ``(C, Y, X)`` with the image's
    channel count, a stack of frames ``(N, Y, X)`` (one channel), or ``(N, C, Y, X)``. The
    ``(Y, X)`` size must be the image's. Raises ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    arr = _read_reference_tiff(path, "flat field", np.float32, "pass an image of a uniform "
                               "fluorescent sample, or leave out --flat-field")
    if arr.ndim == 4 and arr.shape[1] == n_channels:
        arr = arr.mean(axis=0)
    elif arr.ndim == 3 and n_channels == 1:
        arr = arr.mean(axis=0, keepdims=True)
    elif arr.ndim == 2:
        arr = np.broadcast_to(arr, (n_channels, *arr.shape))
    elif not (arr.ndim == 3 and arr.shape[0] == n_channels):
        raise ValueError(f"flat field {path}: shape {arr.shape} does not match an image with "
                         f"{n_channels} channel(s); pass a (Y, X) flat or one with "
                         f"{n_channels} channel(s) first (frames before channels)")
    _check_flat_size(path, arr.shape, shape_yx)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_flat_size(path: Path, shape: tuple[int, ...], shape_yx: tuple[int, int]) -> None:
    if tuple(shape[-2:]) != tuple(shape_yx):
        raise ValueError(f"flat field {path}: {shape[-2]} x {shape[-1]} pixels, the image "
                         f"{shape_yx[0]} x {shape_yx[1]}; record the flat field with the "
                         "image's camera region and binning")


def check_flat_field_size(path: str | Path, shape_yx: tuple[int, int]) -> None:
    """Refuse (``ValueError`` naming the file) a flat field whose ``(Y, X)`` size is not the
    image's, from its header alone: the run checks it when it inspects each image, before any
    work. A file that is no TIFF passes here and is refused when it is read."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return
    _check_flat_size(path, shape, shape_yx)


def flat_field_gain(flat: np.ndarray, dark_levels: Sequence[float], *,
                    path: str | Path = "flat field") -> np.ndarray:
    """Relative illumination ``(C, Y, X)``, mean 1 per channel: the flat above its dark level,
    smoothed (Gaussian of :data:`FLAT_SMOOTH_PX`). Raises ``ValueError`` (naming ``path``)
    where it falls below :data:`FLAT_MIN_GAIN` of its mean."""
    from scipy.ndimage import gaussian_filter

    gain = np.empty(flat.shape, np.float32)
    for k, (ch, dark) in enumerate(zip(flat, dark_levels, strict=True)):
        g = gaussian_filter(np.asarray(ch, np.float64) - dark, FLAT_SMOOTH_PX, mode="nearest")
        mean = float(g.mean())
        if not mean > 0 or not g.min() >= FLAT_MIN_GAIN * mean:
            raise ValueError(
                f"flat field {path}: channel {k} falls to {g.min() / mean if mean > 0 else 0:.2g} "
                f"of its mean above the dark level ({dark:g}); a flat field is an image of a "
                "uniform fluorescent sample, bright everywhere in the field")
        gain[k] = g / mean
    return gain


_FLAT_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def _flat(path: Path, n_channels: int, shape_yx: tuple[int, int]) -> np.ndarray:
    """:func:`read_flat_field`, read once while the file stays the same (every plane of a
    stack, and the calibration check's second calibration, use it)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, n_channels, tuple(shape_yx))
    if key not in _FLAT_CACHE:
        _FLAT_CACHE.clear()  # one flat held at a time
        _FLAT_CACHE[key] = read_flat_field(path, n_channels, shape_yx)
    return _FLAT_CACHE[key]


def illumination_corrected(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                           pixel_size_um: float, *, reuse: dict[str, Any] | None = None
                           ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """``plane`` with uneven illumination divided out, and its record; ``(plane, None)``
    without ``settings.flat_field``.

    Each channel becomes ``dark + (intensity - dark) / gain`` (:func:`flat_field_gain`), so
    the dark level stays where it was and the calibration that follows sees an evenly lit
    image. The dark level is, in order: the user's ``OFFSET:SCALE`` pairs, the dark frame,
    the first plane's calibration (``reuse``), the background outside the nuclei, the
    0.5th percentile. The flat's own dark level is the dark frame's when there is one, else
    the image's (the same camera). Returns float32.
    """
    path = getattr(settings, "flat_field", None)
    if path is None:
        return plane, None
    path, n = Path(path), len(roles)
    mode = settings.calibration_for(n)
    image_dark, source = None, None
    if not isinstance(mode, str):
        image_dark, source = [c.offset for c in mode], "user"
    elif settings.dark_frame is not None:
        image_dark, source = dark_frame_offsets(settings.dark_frame, n), "dark-frame"
    elif reuse is not None and reuse.get("channels"):
        image_dark, source = [c["offset"] for c in reuse["channels"]], "first plane"
    else:
        bg = background_level(plane, pixel_size_um)
        if bg is not None:
            image_dark, source = bg["offsets"], "image-background"
        else:
            image_dark = [float(np.percentile(_f64(ch), AUTO_PERCENTILES[0])) for ch in plane]
            source = "percentile"
    flat_dark = (dark_frame_offsets(settings.dark_frame, n) if settings.dark_frame is not None
                 else image_dark)
    gain = flat_field_gain(_flat(path, n, plane.shape[-2:]), flat_dark, path=path)
    out = np.empty(plane.shape, np.float32)
    for k, (ch, dark) in enumerate(zip(plane, image_dark, strict=True)):
        x = _f64(ch) - dark
        x /= gain[k]
        x += dark
        out[k] = x
    rec = {"path": str(path), "dark_level": source,
           "gain_min": [round(float(g.min()), 4) for g in gain],
           "gain_max": [round(float(g.max()), 4) for g in gain]}
    return out, rec


def _mad(values: np.ndarray) -> float:
    """Median absolute deviation of ``values`` (a copy, which it overwrites)."""
    values -= np.median(values)
    np.abs(values, out=values)
    return np.median(values, overwrite_input=True)


def _f64(channel: np.ndarray) -> np.ndarray:
    """One channel in float64 (a plane is converted a channel at a time, never whole)."""
    return np.asarray(channel, dtype=np.float64)


def _read_reference_tiff(path: Path, what: str, dtype: Any, hint: str) -> np.ndarray:
    """A dark frame's or flat field's pixels in ``dtype``; ``ValueError`` naming the file
    (``what`` and ``path``) when it is no TIFF (with ``hint``) or holds non-finite values."""
    import tifffile

    try:
        arr = np.asarray(tifffile.imread(path), dtype=dtype)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{what} {path}: cannot be read as a TIFF ({exc}); {hint}") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} {path}: holds non-finite values")
    return arr


def dark_frame_offsets(path: str | Path, n_channels: int) -> list[float]:
    """Per-channel dark level from a dark-frame TIFF: the median of each channel.

    The frame may be (Y, X) (one level for every channel), (C, Y, X), or a stack whose first
    axis holds frames (the median over all). Raises ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    arr = _read_reference_tiff(path, "dark frame", np.float64, "pass a TIFF recorded with the "
                               "shutter closed, or leave out --dark-frame")
    if arr.ndim == 2:
        return [float(np.median(arr))] * n_channels
    if arr.ndim == 3 and arr.shape[0] == n_channels:
        return [float(np.median(ch)) for ch in arr]
    if arr.ndim == 3 and n_channels == 1:
        return [float(np.median(arr))]
    raise ValueError(f"dark frame {path}: shape {arr.shape} does not match an image with "
                     f"{n_channels} channel(s); pass a (Y, X) frame or one with "
                     f"{n_channels} channel(s) first")


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

    data = np.asarray(planes)  # as stored; each use converts one channel at a time
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
        offsets = [float(np.percentile(_f64(ch), AUTO_PERCENTILES[0])) for ch in data]
    model = ChromatinModel(phi_max, interface_length_um)
    side, need = min(min(data.shape[-2:]), CROP_PX), criterion_field_px(pixel_size_um)
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
    vals = _f64(plane[foreground] if foreground is not None else plane)
    mid = float(np.median(vals)) - offsets[0]
    if not mid > 0:
        raise ValueError("the heterochromatin channel has no signal above its dark level; "
                         "pass --calibration OFFSET:SCALE")
    return Calibration(offset=float(offsets[0]), scale=SINGLE_CHANNEL_MEDIAN * phi_max / mid)


def corrected_calibration(roles: Sequence[ChannelRole], cals: Sequence[Calibration],
                          check: dict[str, Any]) -> tuple[Calibration, ...]:
    """``cals`` with the heterochromatin scale times the check's ``preferred_ratio`` (offsets
    and the chromatin scale as given)."""
    ih = tuple(roles).index("heterochromatin")
    return tuple(Calibration(offset=c.offset, scale=c.scale * (check["preferred_ratio"]
                                                                if k == ih else 1.0))
                 for k, c in enumerate(cals))


def alternative_fields(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                       record: dict[str, Any], *, dtype: Any = np.float64
                       ) -> np.ndarray | None:
    """The plane's fields under the calibration the image prefers, when the calibration check
    (``record["check"]``, from :func:`calibrate_plane`) contradicted the user's pairs and they
    were kept (``--calibration-check warn``); otherwise ``None``.

    :func:`pipeline.estimate.fit_plane` takes them as ``alternative``: the std then spans
    what the two calibrations disagree on.
    """
    from pipeline.physics.observation import to_fields

    check = record.get("check") or {}
    if not check.get("contradicted") or check.get("applied"):
        return None
    # a check runs on the user's pairs only, so their offsets are the flat field's dark level
    # (the pixel size, which only the background rule reads, is not needed)
    plane, _ = illumination_corrected(plane, roles, settings, float("nan"))
    cals = corrected_calibration(roles, settings.calibration_for(len(roles)), check)
    return to_fields(plane, roles, cals, phi_max=settings.physics.phi_max, dtype=dtype,
                     clip=False)[0]


def _user_check(plane: np.ndarray, roles: Sequence[ChannelRole],
                cals: Sequence[Calibration], settings: Any, pixel_size_um: float,
                reuse: dict[str, Any] | None) -> dict[str, Any]:
    """The check of a user's two-channel calibration (:mod:`pipeline.calibration_check`) on
    the first plane of a stack; later planes (``reuse``) carry the first plane's record."""
    from pipeline.calibration_check import check_calibration
    from pipeline.physics.chromatin import ChromatinModel

    if reuse is not None and reuse.get("check") is not None:
        return dict(reuse["check"]) | {"reused_from_plane": reuse["check"].get(
            "reused_from_plane", 0)}
    # the criterion reads a central crop: its nuclei are found there, not on the whole plane
    data = central_crop(np.asarray(plane), CROP_PX)
    bg = background_level(data, pixel_size_um)
    model = ChromatinModel(settings.physics.phi_max, settings.physics.interface_length_um)
    out = check_calibration(data, roles, cals, pixel_size_um, model,
                            foreground=bg["foreground"] if bg else None, seed=settings.seed)
    if out["contradicted"] and settings.calibration_check == "fix":
        log.warning("calibration check: %s. --calibration-check fix: the heterochromatin "
                    "scale is corrected to the ratio the image prefers", out["statement"])
    elif out["contradicted"]:
        log.warning("calibration check: %s. λ is fitted with your pairs and its std includes "
                    "the difference the image's preferred ratio makes. Check the --calibration "
                    "pairs, or run with --calibration-check fix (or --calibration image) to let "
                    "the image set the heterochromatin scale (docs/calibration.md)",
                    out["statement"])
    else:
        log.info("calibration check: %s", out["statement"])
    return out


def calibrate_plane(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                    pixel_size_um: float, *, reuse: dict[str, Any] | None = None,
                    dtype: Any = np.float64) -> tuple[np.ndarray, dict[str, Any]]:
    """Fields and calibration record of one plane under ``settings.calibration``.

    ``"image"`` calibrates from the image (:func:`image_calibration`); a stack is calibrated
    once, on its first plane, and later planes pass that plane's record as ``reuse``. A
    two-channel image whose calibration is not identifiable gets the percentile rule and a
    warning that says so and what to pass. ``"auto"`` and user pairs go straight to
    :func:`~pipeline.physics.observation.to_fields`. The record (stored per plane in the run)
    always holds ``source``, ``identifiable`` and ``confidence``. The fields are computed in
    float64 and stored in ``dtype`` (:func:`~pipeline.physics.observation.to_fields`), and
    not clipped to the fractions' ranges: noise keeps its mean.
    """
    from pipeline.physics.observation import to_fields

    plane, flat_rec = illumination_corrected(plane, roles, settings, pixel_size_um, reuse=reuse)
    extra = {} if flat_rec is None else {"flat_field": flat_rec}
    phi_max = settings.physics.phi_max
    mode = settings.calibration_for(len(roles))
    if mode != "image":
        user = not isinstance(mode, str)
        check = None
        if user and len(roles) == 2 and settings.calibration_check != "off":
            check = _user_check(plane, roles, mode, settings, pixel_size_um, reuse)
            if check["contradicted"] and settings.calibration_check == "fix":
                mode = corrected_calibration(roles, mode, check)
                check["applied"] = True
        fields, rec = to_fields(plane, roles, mode, phi_max=phi_max, dtype=dtype, clip=False)
        rec |= {"mode": "user" if user else "auto", "source": "user" if user else "percentile",
                "identifiable": user, "confidence": None}
        if not user:
            rec["statement"] = "percentile rule (--calibration auto): " + rec["assumption"]
            log.warning("calibration: λ rests on the percentile rule (--calibration auto); "
                        "two-channel patterns and all absolute values may be wrong")
        if check is not None:
            if check.get("applied"):
                ih = roles.index("heterochromatin")
                rec["channels"][ih]["source"] = "user, scale corrected by the calibration check"
            rec["check"] = check
        return fields, rec | extra
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
    fields, rec = to_fields(plane, roles, cals, phi_max=phi_max, dtype=dtype, clip=False)
    for ch in rec["channels"]:
        ch["source"] = info["source"]
    return fields, rec | info | extra
