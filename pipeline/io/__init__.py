"""Input and output: TIFF in, OME-Zarr out, and atomic writes.

Re-exports the public API of :mod:`pipeline.io.tiff`, :mod:`pipeline.io.omezarr` and
:mod:`pipeline.io.atomic`. The OME-Zarr writer (and ome-zarr-py behind it) is imported on
first use, so that reading TIFFs stays quick to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.io.atomic import (
    atomic_dir,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    clean_partials,
)
from pipeline.io.tiff import (
    SUPPORTED_AXES,
    ImageInfo,
    InputError,
    discover_tiffs,
    inspect_tiff,
    read_planes,
    write_tiff,
)

if TYPE_CHECKING:
    from pipeline.io.omezarr import open_result_store, write_result_store

__all__ = [
    "SUPPORTED_AXES",
    "ImageInfo",
    "InputError",
    "atomic_dir",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_partials",
    "discover_tiffs",
    "inspect_tiff",
    "open_result_store",
    "read_planes",
    "write_result_store",
    "write_tiff",
]

_LAZY = {"open_result_store", "write_result_store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pipeline.io import omezarr

        return getattr(omezarr, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
