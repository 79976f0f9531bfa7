"""Intensity calibration from the image itself (``--calibration image``, the default).

Each channel is calibrated as ``field = (intensity - offset) * scale`` (the observation models
are in :mod:`pipeline.physics.observation`). Most labs have no calibration sample, so
chromarate takes what it can from the image and says, per image, where every number came from
and whether the image determined it. ``docs/calibration.md`` states every assumption and the
measurements behind the constants below.

**Dark level (offset).** In order of preference: a dark frame the user passes
(``--dark-frame``: its per-channel median), or the background outside the nuclei (pixels under
an Otsu threshold of the smoothed image, when the image has a real background: see
:func:`pipeline.background.background_level`). Outside the nucleus there is no chromatin, so the background is
zero occupancy in both channels.

**Two channels:** physics-informed self-calibration of the heterochromatin scale and offset
(:mod:`pipeline.self_calibration`, whose names are re-exported here).

**Uneven illumination** (``--flat-field``): every step above, and the fields, see the plane
divided by the smoothed, mean-one illumination of a flat-field image above its dark level
(:func:`illumination_corrected`, which decides the dark levels; the flat field's reading,
smoothing and division are :mod:`pipeline.illumination`, whose names are re-exported here).

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

from pipeline.background import (
    MAX_BACKGROUND_NOISE_RATIO,
    assumed_offset,
    background_level,
    f64,
    offset_check,
)
from pipeline.channels import ChannelsRead
from pipeline.config import INTERFACE_LENGTH_UM, PHI_MAX, Calibration, ChannelRole
from pipeline.defect_pixels import defect_pixels_replaced, defect_statement
from pipeline.estimate.bandwidth import central_crop
from pipeline.illumination import (
    FLAT_MIN_GAIN,
    FLAT_SMOOTH_PX,
    check_flat_field_size,
    dark_frame_offsets,
    divide_illumination,
    flat_field_gain,
    read_flat_field,
)
from pipeline.physics.observation import AUTO_PERCENTILES, auto_calibration
from pipeline.registration import reapplied, registered
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
    "MAX_BACKGROUND_NOISE_RATIO",
    "MIN_CONTRAST",
    "assumed_offset",
    "background_level",
    "dark_frame_offsets",
    "FLAT_MIN_GAIN",
    "FLAT_SMOOTH_PX",
    "check_flat_field_size",
    "flat_field_gain",
    "illumination_corrected",
    "read_flat_field",
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


def illumination_corrected(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                           pixel_size_um: float, *, reuse: dict[str, Any] | None = None,
                           read: ChannelsRead | None = None
                           ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """``plane`` with uneven illumination divided out, and its record; ``(plane, None)``
    without ``settings.flat_field``.

    Each channel becomes ``dark + (intensity - dark) / gain`` (:func:`flat_field_gain`), so
    the dark level stays where it was and the calibration that follows sees an evenly lit
    image. The dark level is, in order: the user's ``OFFSET:SCALE`` pairs, the dark frame,
    the first plane's calibration (``reuse``), the background outside the nuclei, the
    0.5th percentile. The flat's own dark level is the dark frame's when there is one, else
    the image's (the same camera). ``read``: the file's channels read, when not all
    (reference frames with all of them are read on the same channels). Returns float32.
    """
    path = getattr(settings, "flat_field", None)
    if path is None:
        return plane, None
    n = len(roles)
    mode = settings.calibration_for(n)
    frame = (dark_frame_offsets(settings.dark_frame, n, read)
             if settings.dark_frame is not None else None)
    if not isinstance(mode, str):
        image_dark, source = [c.offset for c in mode], "user"
    elif frame is not None:
        image_dark, source = frame, "dark-frame"
    elif reuse is not None and reuse.get("channels"):
        image_dark, source = [c["offset"] for c in reuse["channels"]], "first plane"
    else:
        bg = background_level(plane, pixel_size_um)
        if bg is not None:
            image_dark, source = bg["offsets"], "image-background"
        else:
            image_dark = [float(np.percentile(f64(ch), AUTO_PERCENTILES[0])) for ch in plane]
            source = "percentile"
    out, rec = divide_illumination(plane, image_dark, Path(path),
                                   frame if frame is not None else image_dark, read)
    return out, {"path": rec["path"], "dark_level": source} | rec


def image_calibration(planes: np.ndarray, roles: Sequence[ChannelRole], pixel_size_um: float,
                      *, phi_max: float = PHI_MAX,
                      interface_length_um: float = INTERFACE_LENGTH_UM,
                      dark_frame: str | Path | None = None, seed: int = 0,
                      read: ChannelsRead | None = None
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
        offsets, off_source = dark_frame_offsets(dark_frame, n, read), "dark-frame"
        bg = background_level(data, pixel_size_um)
    else:
        bg = background_level(data, pixel_size_um)
        offsets, off_source = (bg["offsets"], "image-background") if bg else (None, None)
    fg = bg["foreground"] if bg else None
    info: dict[str, Any] = {"mode": "image", "dark_level": off_source or "none",
                            "background_fraction": bg["fraction"] if bg else 0.0}
    if n == 1:
        cal = _single_channel(data[0], offsets, phi_max, fg)
        src = off_source or "assumed-offset"
        rule = ("the scale assumes a nuclear median φ_h of "
                f"{SINGLE_CHANNEL_MEDIAN:g} φ_max (median λ near 1)")
        if offsets is None:
            rule += (f"; no dark level (no dark frame, no background): offset {cal.offset:g} "
                     "assumed, at or below the true one, which moves λ's level, not its "
                     "pattern; pass --dark-frame")
        info |= {"source": src,
                 "sources": [{"offset": src, "scale": "assumed"}],
                 "identifiable": False, "confidence": None,
                 "statement": ("single channel: λ's level is not identifiable from the image "
                               f"(its pattern is robust to calibration); {rule}"
                               + (f"; offset from {src}" if offsets is not None else "")),
                 "hint": "pass --calibration OFFSET:SCALE for absolute λ"}
        log.warning("calibration: %s", info["statement"])
        return (cal,), info
    if offsets is None:
        offsets = [float(np.percentile(f64(ch), AUTO_PERCENTILES[0])) for ch in data]
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
    """The nuclear median at φ_max / 2 above the dark level; without a dark level, above
    :func:`assumed_offset` (λ's pattern holds under an offset too low, not under one near the
    data's bottom, where the percentile rule put it: docs/calibration.md), unless that puts
    the 99.5th percentile above a volume fraction of 1, where the 99.5th percentile goes to
    φ_max instead."""
    guard = offsets is None
    if offsets is None:
        offsets = [assumed_offset(plane)]
    vals = f64(plane[foreground] if foreground is not None else plane)
    mid = float(np.median(vals)) - offsets[0]
    if not mid > 0:
        raise ValueError("the heterochromatin channel has no signal above its dark level; "
                         "pass --calibration OFFSET:SCALE")
    scale = SINGLE_CHANNEL_MEDIAN * phi_max / mid
    top = float(np.percentile(vals, AUTO_PERCENTILES[1])) - offsets[0]
    if guard and top * scale > 1.0:
        # a volume fraction above 1 is impossible: the median was not the nuclei's (a field
        # of nuclei whose background was not found); the brightest pixels go to φ_max
        scale = phi_max / top
    return Calibration(offset=float(offsets[0]), scale=scale)


def corrected_calibration(roles: Sequence[ChannelRole], cals: Sequence[Calibration],
                          check: dict[str, Any]) -> tuple[Calibration, ...]:
    """``cals`` with the heterochromatin scale times the check's ``preferred_ratio`` (offsets
    and the chromatin scale as given)."""
    ih = tuple(roles).index("heterochromatin")
    return tuple(Calibration(offset=c.offset, scale=c.scale * (check["preferred_ratio"]
                                                                if k == ih else 1.0))
                 for k, c in enumerate(cals))


def _defects_replaced(plane: np.ndarray, settings: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The first step on a raw plane, under ``--defect-pixels``
    (:func:`pipeline.defect_pixels.defect_pixels_replaced`)."""
    return defect_pixels_replaced(
        plane, enabled=getattr(settings, "defect_pixels", "replace") == "replace")


def alternative_fields(plane: np.ndarray, roles: Sequence[ChannelRole], settings: Any,
                       record: dict[str, Any], *, dtype: Any = np.float64,
                       read: ChannelsRead | None = None) -> np.ndarray | None:
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
    plane, _ = _defects_replaced(plane, settings)
    plane, _ = illumination_corrected(plane, roles, settings, float("nan"), read=read)
    plane = reapplied(plane, record.get("registration"))
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
                    dtype: Any = np.float64, read: ChannelsRead | None = None
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Fields and calibration record of one plane under ``settings.calibration``.

    ``"image"`` calibrates from the image (:func:`image_calibration`); a stack is calibrated
    once, on its first plane, and later planes pass that plane's record as ``reuse``. A
    two-channel image whose calibration is not identifiable gets the percentile rule and a
    warning that says so and what to pass. ``"auto"`` and user pairs go straight to
    :func:`~pipeline.physics.observation.to_fields`. The record (stored per plane in the run)
    always holds ``source``, ``identifiable`` and ``confidence``. The fields are computed in
    float64 and stored in ``dtype`` (:func:`~pipeline.physics.observation.to_fields`), and
    not clipped to the fractions' ranges: noise keeps its mean. ``read``: the file's channels
    read when not all of them (a dark frame or flat field may hold all, like the image).
    """
    from pipeline.physics.observation import to_fields

    plane, defect_rec = _defects_replaced(plane, settings)
    if any(ch["candidates"] for ch in defect_rec["channels"]):
        log.info("defect pixels: %s", defect_statement(defect_rec))
    plane, flat_rec = illumination_corrected(plane, roles, settings, pixel_size_um, reuse=reuse,
                                             read=read)
    plane, reg_rec = registered(plane, roles, settings, pixel_size_um)
    extra = {"defect_pixels": defect_rec}
    if flat_rec is not None:
        extra["flat_field"] = flat_rec
    if reg_rec is not None:
        extra["registration"] = reg_rec
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
        if user:
            rec["offset_check"] = offset_check(plane, [c.offset for c in mode], pixel_size_um)
            if rec["offset_check"]["contradicted"]:
                log.warning("calibration: %s", rec["offset_check"]["statement"])
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
            dark_frame=getattr(settings, "dark_frame", None), seed=settings.seed, read=read)
        if not info["identifiable"] and len(roles) == 2:
            log.warning("calibration: %s. %s", info["statement"], info["hint"])
    fields, rec = to_fields(plane, roles, cals, phi_max=phi_max, dtype=dtype, clip=False)
    for ch in rec["channels"]:
        ch["source"] = info["source"]
    return fields, rec | info | extra
