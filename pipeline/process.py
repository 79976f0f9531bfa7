"""One image in stages: ingest → denoise → fit (tiled) → segment → assemble.

Each stage reads what the previous one wrote and writes its own output atomically into the
image's work folder ``OUT/.chromarate/work/<stem>-<key>/``; a stage whose output exists is
skipped, so a killed run resumes where it stopped. ``key`` (:func:`image_key`) hashes the
input's content, the settings that change results and the code version. The final
``OUT/<stem>.ome.zarr`` is written in one atomic step by :func:`assemble`, then the work
folder is removed; a store whose recorded key matches is finished work (:func:`is_done`).

Stages pass paths and a small typed manifest (:class:`~pipeline.manifest.ImageManifest`),
never arrays, so that the Prefect flow can wrap each one as a task. :func:`process_image`
runs them all in process. The fit stage is :mod:`pipeline.fit_stage` (re-exported here); what
the stages share (their work-folder output, error handling, the image's planes) is
:mod:`pipeline.stages`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import __version__
from .cache import RESULT_SOURCES, code_version, content_hash, image_key, is_done, result_path
from .config import Settings
from .denoise import calibrate, denoise_planes
from .errors import ImageError, name_errors
from .fit_stage import fit_image
from .image_check import MIN_SIDE_PX, check_image
from .io.stage_store import save_stage, stage_record, stage_store
from .manifest import ImageManifest
from .segment import nuclei_foreground, segment_domains
from .stages import (
    ManifestLike,
    Progress,
    check_finite,
    image_planes,
    stage_errors,
    stage_output,
)

__all__ = [  # noqa: RUF022 (stages in run order, then the cache and the rest)
    "ingest", "denoise_image", "fit_image", "segment_image", "assemble", "process_image",
    "RESULT_SOURCES", "code_version", "image_key", "is_done", "result_path",
    "ImageError", "ImageManifest", "MIN_SIDE_PX", "WORK_DIR", "nuclei_foreground",
]

log = logging.getLogger(__name__)

WORK_DIR = ".chromarate"


def ingest(path: str | Path, out_dir: str | Path, settings: Settings) -> ImageManifest:
    """Inspect one TIFF (no pixel read) and return the image's manifest.

    Raises :class:`~pipeline.io.InputError` (naming the file) for a file that cannot be
    processed with ``settings``: see :func:`pipeline.io.inspect_tiff`, plus an image side
    under :data:`MIN_SIDE_PX`, a channel count that ``--channels`` or ``--calibration`` does
    not match, or more than two channels.
    """
    with name_errors(path, "ingest"):
        return _ingest(path, out_dir, settings)


def _ingest(path: str | Path, out_dir: str | Path, settings: Settings) -> ImageManifest:
    check = check_image(path, settings)
    info, labels = check.info, check.labels
    for note in check.notes:
        log.warning("%s: %s", path, note)
    key = image_key(path, settings)
    if labels is not None:
        key = hashlib.sha256(f"{key}:{content_hash(labels)}".encode()).hexdigest()[:20]
    store = result_path(path, out_dir)
    stem = store.name[: -len(".ome.zarr")]
    work = Path(out_dir) / WORK_DIR / "work" / f"{stem}-{key}"
    done = is_done(store, key)
    for stale in work.parent.glob(f"{stem}-*") if work.parent.is_dir() else ():
        if stale != work or done:  # other settings or code, or already assembled
            shutil.rmtree(stale, ignore_errors=True)
    return ImageManifest(
        image=str(Path(path).resolve()), store=str(store), work=str(work), key=key,
        axes=info.axes, shape=tuple(info.shape), pixel_size_um=float(info.pixel_size_um),
        pixel_size_source=info.pixel_size_source, n_planes=info.n_planes,
        plane_axis=info.plane_axis, roles=check.roles, roles_source=check.roles_source,
        channel_index=check.channel_index,
        channel_names=info.channel_names, channels_note=check.channels_note,
        axes_source=info.axes_source,
        axes_note=info.axes_note, series_note=info.series_note,
        axes_override=settings.run.axes if info.axes_source == "--axes" else None,
        z_step_um=info.z_step_um, z_step_source=info.z_step_source,
        nuclei_path=str(labels) if labels else None, done=done)


def denoise_image(manifest: ManifestLike, settings: Settings, *, progress: Progress = None
                  ) -> str:
    """Calibrate the denoiser on the first plane and denoise every plane → ``denoised.zarr``."""
    manifest = ImageManifest.of(manifest)
    with stage_errors(manifest, "denoise"):
        out, done = stage_output(manifest, "denoised")
        if done:
            return str(out)
        t0 = time.perf_counter()
        planes = image_planes(manifest)
        cal = settings.calibration_for(len(manifest.roles))
        offsets = None if isinstance(cal, str) else tuple(c.offset for c in cal)
        first = np.asarray(planes[0])
        check_finite(manifest.image, 0, first)
        params = calibrate(first, method=settings.run.denoise,
                           anscombe=settings.run.anscombe, offsets=offsets)
        den = denoise_planes(planes, params, progress=progress)
        record = params.record | {"depth_px": params.depth_px,
                                  "seconds": time.perf_counter() - t0}
        return str(save_stage(out, {"denoised": den}, record))


def segment_image(manifest: ManifestLike, settings: Settings, fit: str) -> str:
    """Nuclei and heterochromatin domains of every plane → ``segment.zarr``."""
    manifest = ImageManifest.of(manifest)
    with stage_errors(manifest, "segment"):
        return _segment_image(manifest, settings, fit)


def _segment_image(manifest: ImageManifest, settings: Settings, fit: str) -> str:
    out, done = stage_output(manifest, "segment")
    if done:
        return str(out)
    g_fit = zarr.open_group(fit, mode="r")
    fields = g_fit["fields"]
    n, _, h, w = fields.shape
    # the fit stage's nuclei (the user's, or found there for its foreground), not a rerun
    found = stage_record(Path(fit)).get("nuclei") or []
    arrays = {"nuclei": ((n, h, w), np.int32), "domains": ((n, h, w), np.int32)}
    with stage_store(out, arrays) as (root, record):
        records = []
        for p in range(n):
            if not settings.run.segment:
                nuclei, rec_n = np.ones((h, w), np.int32), {"mode": "disabled"}
                rec_d, domains = {"n_domains": 0}, None
            else:
                nuclei, rec_n = np.asarray(g_fit["nuclei"][p]), found[p]
                if rec_n.get("mode") == "whole-field":
                    log.warning("%s plane %d: %s", manifest.image, p, rec_n["note"])
                domains, rec_d = segment_domains(
                    np.asarray(fields[p, 0]), nuclei, manifest.pixel_size_um,
                    domain_sigma_um=settings.segmentation.domain_sigma_um,
                    min_area_um2=settings.segmentation.domain_min_area_um2)
            root["nuclei"][p] = nuclei
            if domains is not None:
                root["domains"][p] = domains
            records.append({"plane": p, "nuclei": rec_n, "domains": rec_d})
            del nuclei, domains
        record["planes"] = records
    return str(out)


def assemble(manifest: ManifestLike, settings: Settings, denoised: str, fit: str,
             segment: str, *, timings: dict[str, float] | None = None) -> str:
    """Write ``OUT/<stem>.ome.zarr`` atomically and drop the work folder.

    λ is reported inside nuclei only: outside them ``rates`` is NaN and ``identifiable`` 0.
    """
    manifest = ImageManifest.of(manifest)
    with stage_errors(manifest, "assemble"):
        return _assemble(manifest, settings, denoised, fit, segment, timings=timings)


def _assemble(manifest: ImageManifest, settings: Settings, denoised: str, fit: str,
              segment: str, *, timings: dict[str, float] | None = None) -> str:
    from .io import write_result_store

    # lazy: the store writer reads the stage stores chunk by chunk, never a whole plane stack
    g_fit, g_seg = zarr.open_group(fit, mode="r"), zarr.open_group(segment, mode="r")
    nuclei = da.from_zarr(g_seg["nuclei"])
    inside = nuclei > 0
    rates = da.where(inside[:, None], da.from_zarr(g_fit["rates"]), np.float32(np.nan))
    ident = (da.from_zarr(g_fit["identifiable"]) * inside).astype(np.uint8)
    den = da.from_zarr(zarr.open_group(denoised, mode="r")["denoised"])
    squeeze = manifest.plane_axis is None
    sq = (lambda a: a[0]) if squeeze else (lambda a: a)
    fit_rec, seg_rec = stage_record(Path(fit)), stage_record(Path(segment))
    planes = [fp | {"segmentation": sp} for fp, sp in
              zip(fit_rec["planes"], seg_rec["planes"], strict=True)]
    attrs = {
        "key": manifest.key, "version": __version__, "code_version": code_version(),
        "source": manifest.image, "axes": manifest.axes,
        "pixel_size_um": manifest.pixel_size_um,
        "pixel_size_source": manifest.pixel_size_source,
        "channel_roles": list(manifest.roles), "channel_roles_source": manifest.roles_source,
        "channel_names": list(manifest.channel_names or ()) or None,
        "channels_read": (None if manifest.channel_index is None
                          else list(manifest.channel_index)),
        "channels_note": manifest.channels_note, "method": settings.method,
        "settings": settings.model_dump(mode="json"), "seed": settings.seed,
        "denoise": stage_record(Path(denoised)), "planes": planes, "tiles": fit_rec["tiles"],
        "timings_s": timings or {}, "rates_outside_nuclei": "NaN (reported inside nuclei only)",
        "axes_source": manifest.axes_source,
        "axes_note": manifest.axes_note, "series_note": manifest.series_note,
        "z_step_um": manifest.z_step_um,
        "z_step_source": manifest.z_step_source,
        "nuclei_source": (f"user labels {manifest.nuclei_path}" if manifest.nuclei_path
                          else "automatic" if settings.run.segment else "disabled"),
    }
    if manifest.plane_axis == "Z" and manifest.z_step_um is None:
        attrs["z_scale"] = ("Z step unknown (none in the metadata, no --z-step): the store's z "
                            "scale is 1 with no unit; pass --z-step UM")
        log.warning("%s: %s", manifest.image, attrs["z_scale"])
    store = write_result_store(
        manifest.store, raw=sq(image_planes(manifest)), pixel_size_um=manifest.pixel_size_um,
        channel_names=list(manifest.roles), rates=sq(rates),
        images={"denoised": (sq(den), list(manifest.roles)),
                "fields": (sq(da.from_zarr(g_fit["fields"])), ["phi_h", "phi_w"])},
        labels={"identifiable": sq(ident), "nuclei": sq(nuclei),
                "domains": sq(da.from_zarr(g_seg["domains"]))},
        attrs=attrs, plane_axis=(manifest.plane_axis or "z").lower(),
        z_spacing_um=manifest.z_step_um,
    )
    shutil.rmtree(manifest.work, ignore_errors=True)
    return str(store)


def process_image(path: str | Path, out_dir: str | Path, settings: Settings, *,
                  progress: Progress = None, force: bool = False) -> dict[str, Any]:
    """Run every stage for one TIFF in process; returns the manifest as a dict
    (``ImageManifest.model_dump(mode="json")``) with ``store``, ``timings_s`` and ``skipped``.

    A finished store with the same key is not recomputed unless ``force``.
    Raises :class:`pipeline.io.InputError` for files that cannot be understood.
    """
    manifest = ingest(path, out_dir, settings)
    if manifest.done and not force:
        return manifest.model_dump(mode="json") | {"skipped": True}
    timings: dict[str, float] = {}
    t = time.perf_counter()
    den = denoise_image(manifest, settings, progress=progress)
    timings["denoise"] = time.perf_counter() - t
    t = time.perf_counter()
    fit = fit_image(manifest, settings, den, progress=progress)
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    seg = segment_image(manifest, settings, fit)
    timings["segment"] = time.perf_counter() - t
    t = time.perf_counter()
    store = assemble(manifest, settings, den, fit, seg, timings=timings)
    timings["assemble"] = time.perf_counter() - t
    return manifest.model_dump(mode="json") | {"store": store, "timings_s": timings,
                                               "skipped": False}
