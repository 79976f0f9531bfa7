"""What every stage of :mod:`pipeline.process` shares: its work-folder output, its error
handling and the image's planes as it reads them.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .errors import InputError, name_errors
from .io import inspect_tiff, read_planes
from .io.atomic import clean_partials
from .manifest import ImageManifest
from .memory import release_freed_memory

__all__ = ["ManifestLike", "Progress", "check_finite", "image_planes", "stage_errors",
           "stage_output"]

Progress = Callable[[dict], None] | None
ManifestLike = ImageManifest | Mapping[str, Any]
"""What the stages accept: a manifest from :func:`pipeline.process.ingest`, or one as a dict
(JSON)."""


@contextlib.contextmanager
def stage_errors(manifest: ImageManifest, stage: str) -> Iterator[None]:
    """:func:`~pipeline.errors.name_errors` for a stage; a refused image also drops its work
    folder (its stage outputs would only fail the same way again), while other failures keep
    it for a resume. Either way the stage's freed memory goes back to the OS before the next
    stage."""
    try:
        with name_errors(manifest.image, stage):
            yield
    except InputError:
        shutil.rmtree(manifest.work, ignore_errors=True)
        raise
    finally:
        release_freed_memory()


def image_planes(manifest: ImageManifest, *, fill_nan: bool = True):
    """The image's ``(P, C, Y, X)`` planes, its channels read only (``--channels ... ignore``);
    NaN pixels (a float image's NaN background) as 0 unless not ``fill_nan``."""
    path = manifest.image
    planes = read_planes(path, inspect_tiff(path, pixel_size_um=manifest.pixel_size_um,
                                            axes=manifest.axes_override, warn=False))
    planes = planes if manifest.channel_index is None else planes[:, list(manifest.channel_index)]
    if fill_nan and planes.dtype.kind == "f":  # a NaN background reads as a dark one (0)
        planes = da.where(da.isnan(planes), planes.dtype.type(0), planes)
    return planes


def stage_output(manifest: ImageManifest, name: str) -> tuple[Path, bool]:
    """The stage's store ``<work>/<name>.zarr`` (the work folder made, a killed write's
    partial files removed), and whether it is already there (the stage is skipped)."""
    work = Path(manifest.work)
    work.mkdir(parents=True, exist_ok=True)
    clean_partials(work)
    out = work / f"{name}.zarr"
    return out, out.exists()


def check_finite(image: str, plane: int, data: np.ndarray) -> None:
    """Refuse infinite pixel values (NaN ones are a masked background: :func:`pipeline.plane_qc.missing_pixels`)."""
    if data.dtype.kind != "f":
        return
    n_inf = int(np.isinf(data).sum())
    if n_inf:
        raise InputError(image, f"plane {plane} holds {n_inf} infinite pixel value(s)",
                         "Replace them (for example with the background level) and save the "
                         "file again, or move it out of the folder")
