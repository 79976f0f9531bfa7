"""The fit stage of one image (:mod:`pipeline.process`): every plane's calibration, quality
checks, nuclei and tiled fit of λ → ``fit.zarr``.
"""

from __future__ import annotations

import logging

import dask
import numpy as np

from .calibration import alternative_fields, calibrate_plane
from .config import Settings
from .estimate import fit_plane
from .io.stage_store import stage_store
from .manifest import ImageManifest
from .memory import release_freed_memory
from .physics.chromatin import ChromatinModel
from .plane_qc import (
    empty_plane_note,
    intensity_drift,
    intensity_level,
    missing_pixels,
    no_signal_note,
    signal_contrast,
)
from .saturation import saturated_pixels
from .segment import foreground_of, segment_nuclei
from .stages import ManifestLike, Progress, check_finite, image_planes, stage_errors, stage_output
from .user_labels import read_user_labels

__all__ = ["fit_image"]

log = logging.getLogger(__name__)


def fit_image(manifest: ManifestLike, settings: Settings, denoised: str, *,
              progress: Progress = None) -> str:
    """Fields, bandwidths and the tiled fit of every plane → ``fit.zarr``."""
    manifest = ImageManifest.of(manifest)
    with stage_errors(manifest, "fit"):
        return _fit_image(manifest, settings, denoised, progress=progress)


def _fit_image(manifest: ImageManifest, settings: Settings, denoised: str, *,
               progress: Progress = None) -> str:
    out, done = stage_output(manifest, "fit")
    if done:
        return str(out)
    raw = image_planes(manifest)  # NaN as 0: the minima and maxima, the shape
    source = image_planes(manifest, fill_nan=False)
    model = ChromatinModel(settings.physics.phi_max, settings.physics.interface_length_um)
    roles, px = tuple(manifest.roles), manifest.pixel_size_um
    n, _, h, w = raw.shape
    planes, tiles = [], []
    user = None  # the user's nuclei, read once for every plane
    if settings.run.segment and manifest.nuclei_path:
        user, rec_user = read_user_labels(manifest.nuclei_path, (h, w), n,
                                          manifest.plane_axis is not None)
    # the nuclei (the user's or found here) are kept for the segment stage
    seg = settings.run.segment
    arrays = {"rates": ((n, 2, h, w), np.float32), "identifiable": ((n, h, w), np.uint8),
              "fields": ((n, 2, h, w), np.float32)} | (
                  {"nuclei": ((n, h, w), np.int32)} if seg else {})
    nuclei_records: list[dict | None] = [None] * n
    # blank planes last: the planes after the first reuse its calibration, which a blank
    # plane cannot give (one pass over the stack for the channels' minima and maxima)
    low, high = (np.asarray(a) for a in dask.compute(raw.min(axis=(2, 3)),
                                                     raw.max(axis=(2, 3))))
    empties = {p: note for p in range(n)
               if (note := empty_plane_note(p, low[p], high[p], roles))}
    # one calibration for every plane: the user's pairs, or the image's from its first plane
    mode = settings.calibration_for(len(roles))
    shared_calibration = not isinstance(mode, str) or (
        mode == "image" and settings.calibrate_planes == "first")
    # each plane's maps go to the store as soon as it is fitted: memory is one plane's fit
    with stage_store(out, arrays) as (root, record):
        for p in sorted(range(n), key=lambda q: q in empties):
            plane_raw = np.asarray(source[p])  # as stored: calibration converts it once
            check_finite(manifest.image, p, plane_raw)
            missing, missing_note = missing_pixels(plane_raw, p)
            if missing is not None:
                log.warning("%s %s", manifest.image, missing_note)
                plane_raw = np.where(np.isnan(plane_raw), plane_raw.dtype.type(0), plane_raw)
            contrast = [signal_contrast(ch, px, settings.segmentation.smooth_um)
                         for ch in plane_raw]
            empty = empties.get(p)
            no_signal = None if empty else no_signal_note(p, contrast, roles)
            for note in (empty, no_signal):
                if note:
                    log.warning("%s %s", manifest.image, note)
            # lambda is fitted on the calibrated raw fields, not the denoised ones: the
            # mollifier is the smoothing, the bandwidths are chosen for it on these data, and
            # the std resamples their noise (the denoised planes are kept for display)
            # float32 is what fit_plane holds: computed in float64 and rounded a block at a time
            # the stack's reference: its first plane fitted that holds an image
            ref = next((r for r in planes if "empty" not in r and "no_signal" not in r), None)
            reuse = (ref["calibration"] | {"reused_from_plane": ref["plane"]}
                     if ref and settings.calibrate_planes == "first" else None)
            fields, calib = calibrate_plane(plane_raw, roles, settings, px, reuse=reuse,
                                            dtype=np.float32, read=manifest.channels_read)
            # a contradicted calibration, kept: the std spans the image's preferred one too
            alt = alternative_fields(plane_raw, roles, settings, calib, dtype=np.float32,
                                     read=manifest.channels_read)
            saturated, sat_rec = saturated_pixels(plane_raw)
            holes = missing if saturated is None else (
                saturated if missing is None else saturated | missing)
            if saturated is not None:
                log.warning("%s plane %d: %d pixel(s) (%.2g %%) at the detector's ceiling "
                            "(%s): no lambda within the derivative support of them",
                            manifest.image, p, sat_rec["pixels"], 100 * sat_rec["fraction"],
                            ", ".join(str(c["ceiling"]) for c in sat_rec["channels"]
                                      if c["pixels"]))
            # the nuclei restrict the noise model, the bandwidth choice and the fit's weights
            fg = None
            if user is not None:
                labels = np.asarray(user[p], np.int32)
                rec_n = rec_user | {"n_nuclei": int(np.count_nonzero(np.bincount(
                    labels.ravel())[1:]))}
            elif seg:
                labels, rec_n = segment_nuclei(fields, px, single_channel=len(roles) == 1,
                                               settings=settings.segmentation)
            if seg:
                if missing is not None:  # outside the nuclei, whoever drew them
                    labels = np.where(missing, 0, labels).astype(np.int32)
                root["nuclei"][p] = labels
                nuclei_records[p] = rec_n
                fg = foreground_of(labels, rec_n)
                del labels
            level = intensity_level(plane_raw, calib, fg)
            del plane_raw
            release_freed_memory()  # the segmentation's temporaries, before the fit's
            res = fit_plane(fields, model, px, settings, foreground=fg, plane=p,
                            progress=progress, alternative=alt, saturated=holes,
                            channel_model=calib["model"])
            del fields, fg, alt, saturated, holes
            if empty or no_signal:  # fitted like any plane (its record complete), not reported
                res.mean[:], res.std[:], res.identifiable[:] = np.nan, np.nan, False
            root["rates"][p, 0] = res.mean
            root["rates"][p, 1] = res.std
            root["identifiable"][p] = res.identifiable
            root["fields"][p] = res.fields
            drift = None if empty or no_signal or ref is None else intensity_drift(
                p, level, ref, shared=shared_calibration)
            if drift:
                log.warning("%s %s", manifest.image, drift)
            planes.append({"plane": p, "calibration": calib, "saturation": sat_rec,
                           "intensity_level": level,
                           "signal_contrast": [round(c, 1) for c in contrast], **res.record,
                           **({"missing": {"pixels": int(missing.sum()),
                                           "note": missing_note}} if missing is not None else {}),
                           **({"empty": empty} if empty else {}),
                           **({"no_signal": no_signal} if no_signal else {}),
                           **({"intensity_drift": drift} if drift else {})})
            tiles.extend(res.tiles)
            del res
            release_freed_memory()
        planes.sort(key=lambda r: r["plane"])
        tiles.sort(key=lambda r: r["plane"])  # stable: each plane's tiles keep their order
        record |= {"planes": planes, "tiles": tiles,
                   "nuclei": [r for r in nuclei_records if r is not None]}
    return str(out)
