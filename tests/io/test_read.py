"""Lazy reading of TIFF planes (``pipeline.io.read``): dask chunks, one plane at a time,
compressed and big-endian files."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile

from pipeline.io import inspect_tiff, read_planes, write_tiff
from pipeline.io.read import _TiffArray


def test_read_planes_is_lazy_chunked_and_picklable(tmp_path: Path) -> None:
    data = np.arange(2 * 2 * 1100 * 40, dtype=np.uint16).reshape(2, 2, 1100, 40)
    path = write_tiff(tmp_path / "big.tif", data, axes="ZCYX", pixel_size_um=0.05)
    planes = read_planes(path, inspect_tiff(path))
    assert planes.chunks == ((1, 1), (2,), (1024, 76), (40,))
    clone = pickle.loads(pickle.dumps(planes))  # ships to distributed workers
    np.testing.assert_array_equal(clone[1, :, 1000:1100].compute(), data[1, :, 1000:1100])
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(planes.compute(), data)


def test_plane_source_slices(tmp_path: Path) -> None:
    """tifffile indexes the file in its own axis order; dask moves the axes to (P, C, Y, X)."""
    data = np.arange(2 * 3 * 5 * 6, dtype=np.uint16).reshape(2, 3, 5, 6)
    path = write_tiff(tmp_path / "s.tif", data, axes="CZYX", pixel_size_um=0.1)
    info = inspect_tiff(path)
    src = _TiffArray(str(path), info.shape, np.dtype(info.dtype))
    got = src[slice(0, 2), slice(1, 3), slice(1, 4), slice(2, 5)]
    np.testing.assert_array_equal(got, data[0:2, 1:3, 1:4, 2:5])
    planes = read_planes(path, info)
    np.testing.assert_array_equal(planes[1:3, 0:2, 1:4, 2:5].compute(),
                                  data[0:2, 1:3, 1:4, 2:5].transpose(1, 0, 2, 3))


@pytest.mark.parametrize("layout", ["contiguous", "pages", "zlib"])
def test_one_plane_of_a_stack_reads_one_plane(tmp_path: Path, layout: str) -> None:
    """Computing one plane of a 16-plane stack allocates about that plane (2 MiB), not the
    stack (32 MiB): memory-mapped, pages scattered through the file, or compressed."""
    import tracemalloc

    n, side = 16, 1024
    plane = (np.arange(side * side, dtype=np.uint16) % 4093).reshape(side, side)
    data = plane + np.arange(n, dtype=np.uint16)[:, None, None]  # distinct planes
    path = tmp_path / f"{layout}.tif"
    if layout == "pages":  # one page after another, not contiguous: read through zarr
        with tifffile.TiffWriter(path) as tw:
            for page in data:
                tw.write(page, metadata=None, contiguous=False)
    else:
        tifffile.imwrite(path, data, compression=None if layout == "contiguous" else "zlib",
                         metadata={"axes": "ZYX"})
    info = inspect_tiff(path, pixel_size_um=0.1)
    assert (info.axes, info.n_planes) == ("ZYX", n)
    planes = read_planes(path, info)
    np.testing.assert_array_equal(planes[2].compute(scheduler="sync")[0], data[2])  # warm up
    tracemalloc.start()
    try:
        got = planes[9].compute(scheduler="sync")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got[0], data[9])
    assert peak < 4 * data[0].nbytes, f"{peak / 2**20:.1f} MiB to read one 2 MiB plane"


def test_compressed_tiles_read_through_zarr(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 9, (2, 96, 80), dtype=np.uint16)
    path = tmp_path / "tiled.ome.tif"
    tifffile.imwrite(
        path,
        data,
        tile=(32, 32),
        compression="zlib",
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1},
    )
    planes = read_planes(path, inspect_tiff(path))
    np.testing.assert_array_equal(planes[0, :, 40:90, 10:70].compute(), data[:, 40:90, 10:70])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_big_endian_comes_back_native(tmp_path: Path, compression: str | None) -> None:
    data = np.arange(2 * 5 * 6, dtype=np.uint16).reshape(2, 5, 6)
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, data, byteorder=">", compression=compression, imagej=True,
                     resolution=(10, 10), metadata={"axes": "CYX", "unit": "um"})  # fmt: skip
    info = inspect_tiff(path)
    planes = read_planes(path, info).compute()
    assert info.dtype == "uint16" and planes.dtype == np.dtype("uint16")
    np.testing.assert_array_equal(planes[0], data)
