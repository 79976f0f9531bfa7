"""Which results are finished: the cache key of an image and where its store goes.

An image's key hashes its content, the settings that change results (every field not marked
:func:`~pipeline.config_meta.no_effect`) and :func:`code_version`: the package version plus
a hash of the sources that change results (:data:`RESULT_SOURCES`). A finished store carries
its key; a run skips an image whose store has the key it would write.

>>> result_path("data/cell 1.ome.tif", "out").as_posix()
'out/cell 1.ome.zarr'
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import zarr

from . import __version__
from .config import Settings, no_effect_exclude

__all__ = ["RESULT_SOURCES", "code_version", "content_hash", "image_key", "is_done",
           "result_path"]


def result_path(image: str | Path, out_dir: str | Path) -> Path:
    """Where the store for ``image`` goes: ``OUT/<stem>.ome.zarr``."""
    name = Path(image).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(out_dir) / f"{name}.ome.zarr"


# The sources that change a result (λ, its std, the masks, the segmentation, the store's
# content), relative to pipeline/; a folder counts with everything under it. Their code is
# hashed into every image's key, so editing one re-runs finished images. Everything else is
# listed in _NOT_RESULT_SOURCES (drawing, simulating, or comparing stores that already
# exist; error classes): editing it keeps users' finished results. tests/test_contracts.py
# fails on a module in neither list, so a new module gets a decision.
RESULT_SOURCES = (
    "calibration.py",  # intensity -> fields, from the image itself
    "background.py",  # the dark level read from the image's background
    "channels.py",    # which of a file's channels are read, and as what
    "calibration_check.py",  # the user's two-channel calibration against the image (flags)
    "illumination.py",  # the flat field divided out before calibration
    "config.py",      # the settings and their defaults
    "config_meta.py",  # which settings enter the key
    "config_run.py",  # the [run] settings and their defaults
    "manifest.py",    # what the stages know about an image
    "image_check.py",  # how a file is read (layout, channels), or why it is refused
    "plane_qc.py",    # blank or noise-only planes (no λ), intensity drift along a stack
    "denoise.py",
    "device.py",      # where the fit runs (floating-point results depend on it)
    "distance.py",    # distances to the background (segmentation, edge distances)
    "estimate",       # bandwidths, noise, closed form, neural fit, uncertainty
    "io",             # reading the TIFF, writing the store
    "label_ops.py",   # labelling and the watershed of the segmentation
    "mollifier.py",
    "physics",        # the model and the observation (calibration) models
    "process.py",
    "fit_stage.py",   # the fit stage: calibration, plane checks, nuclei, fit per plane
    "stages.py",      # what the stages share: their outputs, errors, the image's planes
    "defect_pixels.py",  # hot and dead pixels replaced before calibration
    "registration.py",  # the heterochromatin channel moved back by --channel-offset
    "saturation.py",  # clipped pixels: holes in the fit
    "mollifier_kernels.py",
    "object_table.py",  # the per-object statistics of the CSVs
    "user_labels.py",  # the user's nuclei, read and checked
    "segment.py",
    "self_calibration.py",  # two-channel calibration from the image
    "summary.py",     # the CSVs: a re-run reuses them while the images' keys are the same
    "tiling.py",
)
_NOT_RESULT_SOURCES = (
    "__init__.py",    # the version, hashed on its own
    "cache.py",       # the key itself: which finished results are reused, not what they hold
    "compare.py",     # condition comparisons over finished stores
    "config_parse.py",  # command-line text -> settings values (the values enter the key)
    "errors.py",
    "memory.py",      # returning freed memory to the OS
    "merge_channels.py",  # writes input TIFFs (channels in separate files merged), no result
    "split_series.py",  # writes input TIFFs (one per image series of a file), no result
    "localisations.py",  # renders localisation tables as input TIFFs, no result
    "split_half.py",  # the split-half check of a localisation table (prints), no result
    "metrics.py",     # scores against a known truth
    "report",         # report.html over finished stores
    "samples.py",     # the sample sheet: joined into the CSVs of finished images
    "simulate",       # synthetic data and ground truth
)


def _source_digest(root: Path) -> str:
    """sha256 over the :data:`RESULT_SOURCES` under ``root`` (paths and contents)."""
    h = hashlib.sha256()
    for entry in RESULT_SOURCES:
        path = root / entry
        # a listed file that is gone (moved) is skipped here; the test names it
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the sources that change results (:data:`RESULT_SOURCES`).

    Editing such a module re-runs finished images; editing a plot, the simulator or a
    benchmark does not.
    """
    return f"{__version__}+{_source_digest(Path(__file__).parent)}"


@lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def image_key(path: str | Path, settings: Settings) -> str:
    """Hash of (file content, result-affecting settings, code version).

    Every setting enters the key unless its field is marked
    :func:`~pipeline.config_meta.no_effect` (:func:`pipeline.config.no_effect_exclude`); a
    dark frame or flat field enters with its content too (a new frame saved under the same
    name re-runs).
    """
    cfg = settings.model_dump(mode="json", exclude=no_effect_exclude(type(settings)))
    parts = [content_hash(path), cfg, code_version()]
    for frame in (settings.dark_frame, settings.flat_field):
        if frame is not None and Path(frame).is_file():
            parts.append(content_hash(frame))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def content_hash(path: str | Path) -> str:
    """A hash of the file's content (cached while its size and mtime stay the same)."""
    st = Path(path).stat()
    return _file_hash(str(path), st.st_size, st.st_mtime_ns)


def is_done(store: str | Path, key: str) -> bool:
    """Whether ``store`` is a finished result for ``key``."""
    if not Path(store).is_dir():
        return False
    try:
        root = zarr.open_group(store, mode="r", zarr_format=3)
        return dict(root.attrs.get("chromarate", {})).get("key") == key
    except (FileNotFoundError, ValueError, KeyError, OSError, zarr.errors.BaseZarrError):
        return False
