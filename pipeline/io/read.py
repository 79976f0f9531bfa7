"""Reading pixels: a lazy ``(P, C, Y, X)`` dask array over a TIFF, read by tifffile.

tifffile does the indexing: uncompressed contiguous data (ImageJ, most OME-TIFF) is
memory-mapped (:func:`tifffile.memmap`), so a chunk reads only its bytes even when a page is
a single strip; anything else (compressed, tiled, pages scattered through the file) goes
through tifffile's zarr store (:meth:`tifffile.TiffFile.aszarr`), which decodes the strips or
tiles that a chunk touches. dask chunks the array in the file's own axis order, one plane at
a time and at most 1024² in YX, and then moves the axes to ``(P, C, Y, X)``; computing one
plane reads one plane.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from pipeline.io.validate import inspect_tiff
>>> from pipeline.io.write import write_tiff
>>> data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
>>> path = write_tiff(Path(tempfile.mkdtemp()) / "c.tif", data, axes="CZYX", pixel_size_um=0.1)
>>> planes = read_planes(path, inspect_tiff(path))
>>> planes.shape, planes.chunksize
((3, 2, 4, 5), (1, 2, 4, 5))
>>> bool((planes[1].compute() == data[:, 1]).all())
True
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
from dask.base import tokenize

from pipeline.io.metadata import ImageInfo

__all__ = ["MAX_CHUNK_YX", "read_planes"]

MAX_CHUNK_YX = 1024
"""The largest dask chunk in Y and in X."""


@functools.lru_cache(maxsize=16)
def _open_array(path: str, mtime_ns: int, size: int) -> Any:
    """A read-only array of series 0, level 0; cached per process and file version."""
    try:
        return tifffile.memmap(path, mode="r", series=0)
    except ValueError:  # compressed, tiled or not contiguous: tifffile's zarr store
        import zarr

        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        return zarr.open(store, mode="r", zarr_format=2)


class _TiffArray:
    """Series 0 of a TIFF in the file's axis order, opened in the process that reads it.

    Holds only the path, shape and dtype, so a dask graph over it pickles to distributed
    workers. Indexing is tifffile's (a memory map or its zarr store); the block comes back as
    a native-byte-order copy.
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype, self.ndim = path, shape, dtype, len(shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        stat = os.stat(self.path)
        array = _open_array(self.path, stat.st_mtime_ns, stat.st_size)
        if array.shape != self.shape:  # a memory map may keep singleton axes
            array = array.reshape(self.shape)
        return np.array(array[key], dtype=self.dtype)


def read_planes(path: str | os.PathLike[str], info: ImageInfo) -> da.Array:
    """A lazy ``(P, C, Y, X)`` dask array over the file, chunked by plane and ≤ 1024² in YX.

    ``info`` comes from :func:`~pipeline.io.inspect_tiff`. Each chunk opens the file in the
    process that computes it, so the graph can be sent to distributed workers; nothing is
    read until the array is computed.
    """
    path = Path(path)
    dtype = np.dtype(info.dtype)
    source = _TiffArray(str(path), tuple(info.shape), dtype)
    sizes = dict(zip(info.axes, info.shape, strict=True))
    chunks = tuple(1 if a in "ZT" else sizes[a] if a == "C" else min(sizes[a], MAX_CHUNK_YX)
                   for a in info.axes)
    stat = os.stat(path)
    # the file's version and how it is read: the same file read with other axes (--axes) is
    # another array, and must not share dask keys with this one
    name = "tiff-planes-" + tokenize(tifffile.__version__, str(path.resolve()), stat.st_mtime_ns,
                                     stat.st_size, info.axes, source.shape, dtype.str, chunks)
    array = da.from_array(source, chunks=chunks, name=name,
                          meta=np.empty((0,) * source.ndim, dtype))
    letters = info.axes.replace("Z", "P").replace("T", "P")
    for missing in ("C", "P"):  # an absent axis becomes a leading axis of length 1
        if missing not in letters:
            array, letters = array[np.newaxis], missing + letters
    return array.transpose([letters.index(a) for a in "PCYX"])
