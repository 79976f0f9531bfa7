"""TIFF input: discovery, inspection without pixels (metadata, layouts, refusals); the
lazy reading is in test_read.py, atomic writes in test_atomic.py."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile

from pipeline.io import (
    InputError,
    discover_tiffs,
    inspect_tiff,
    read_planes,
    write_tiff,
)

SHAPES = {
    "YX": (9, 11),
    "CYX": (2, 9, 11),
    "ZYX": (3, 9, 11),
    "TYX": (3, 9, 11),
    "ZCYX": (3, 2, 9, 11),
    "TCYX": (4, 2, 9, 11),
}


def _canonical(data: np.ndarray, axes: str) -> np.ndarray:
    """Reference (P, C, Y, X) view of ``data`` laid out as ``axes``."""
    for letter in ("C", "P"):
        if letter == "P" and not any(a in axes for a in "ZT"):
            data, axes = data[np.newaxis], "P" + axes
        elif letter == "C" and "C" not in axes:
            lead = 1 if axes[0] in "ZT" else 0
            data, axes = np.expand_dims(data, lead), axes[:lead] + "C" + axes[lead:]
    axes = axes.replace("Z", "P").replace("T", "P")
    return np.transpose(data, [axes.index(a) for a in "PCYX"])


@pytest.mark.parametrize("style", ["ome", "imagej"])
@pytest.mark.parametrize("axes", list(SHAPES))
def test_round_trip_every_layout(tmp_path: Path, axes: str, style: str) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, SHAPES[axes], dtype=np.uint16)
    path = write_tiff(
        tmp_path / f"img_{axes}.tif", data, axes=axes, pixel_size_um=0.0325, metadata=style
    )
    info = inspect_tiff(path)
    assert info.axes == axes
    assert info.shape == data.shape
    assert info.dtype == "uint16"
    assert info.pixel_size_um == pytest.approx(0.0325, rel=1e-6)
    assert info.pixel_size_source == style
    assert info.n_channels == (data.shape[axes.index("C")] if "C" in axes else 1)
    assert info.plane_axis == next((a for a in axes if a in "ZT"), None)
    assert info.n_planes == (data.shape[0] if info.plane_axis else 1)
    planes = read_planes(path, info)
    assert planes.shape == (info.n_planes, info.n_channels, *data.shape[-2:])
    np.testing.assert_array_equal(planes.compute(), _canonical(data, axes))


def test_float32_and_czyx_ome(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((2, 3, 8, 10)).astype(np.float32)
    path = write_tiff(tmp_path / "czyx.ome.tiff", data, axes="CZYX", pixel_size_um=0.1)
    info = inspect_tiff(path)
    assert (info.axes, info.n_channels, info.n_planes, info.dtype) == ("CZYX", 2, 3, "float32")
    np.testing.assert_array_equal(read_planes(path, info).compute(), data.transpose(1, 0, 2, 3))


def test_ome_metadata_of_the_first_image(tmp_path: Path) -> None:
    """Sizes come from the first image's Pixels (tifffile parses the OME-XML), Z in nm too;
    µ written as Greek mu or as an escaped code point is a micrometre; a unit that is not a
    length is refused with the file's name."""
    path = tmp_path / "two.ome.tif"
    nm = {"PhysicalSizeX": 65, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 65,
          "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 250, "PhysicalSizeZUnit": "nm"}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(np.zeros((3, 8, 8), np.uint16), metadata={"axes": "ZYX", **nm})
        tw.write(np.zeros((8, 8), np.uint16),
                 metadata={"axes": "YX", "PhysicalSizeX": 5.0, "PhysicalSizeY": 5.0})
    info = inspect_tiff(path)
    assert (info.shape, info.pixel_size_source, info.z_step_source) == ((3, 8, 8), "ome", "ome")
    assert (info.pixel_size_um, info.z_step_um) == (pytest.approx(0.065), pytest.approx(0.25))
    for unit, um in (("\u03bcm", 0.7), ("\\u00B5m", 0.7), ("parsec", None)):
        other = tmp_path / "unit.ome.tif"
        tifffile.imwrite(other, np.zeros((4, 5), np.uint16), ome=True, metadata={
            "axes": "YX", "PhysicalSizeX": 0.7, "PhysicalSizeXUnit": unit,
            "PhysicalSizeY": 0.7, "PhysicalSizeYUnit": unit})
        if um is None:
            _refusal(other, f"OME PhysicalSizeXUnit '{unit}' is not a length")
        else:
            assert inspect_tiff(other).pixel_size_um == pytest.approx(um)



def _refusal(path: Path, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as err:
        inspect_tiff(path)
    assert str(err.value).startswith(f"{path}: ")
    assert err.value.path == path
    return err.value


def test_refusals(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    _refusal(empty, "empty")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a TIFF at all" * 10)
    _refusal(junk, "not a readable TIFF")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((6, 7, 3), np.uint8), photometric="rgb")
    _refusal(rgb, "colour")
    cplx = tmp_path / "complex.tif"
    tifffile.imwrite(cplx, np.zeros((6, 7), np.complex64))
    _refusal(cplx, "complex")
    unknown = tmp_path / "q.tif"
    tifffile.imwrite(unknown, np.zeros((3, 2, 6, 7), np.uint16), photometric="minisblack")  # QQYX
    assert "Pass --axes" in str(_refusal(unknown, r"does not name its axes \(unknown axis 'Q'"))
    nosize = tmp_path / "nosize.tif"
    tifffile.imwrite(nosize, np.zeros((6, 7), np.uint16), metadata={"axes": "YX"})
    assert "Pass --pixel-size" in str(_refusal(nosize, "no pixel size"))
    two_planes = tmp_path / "tz.tif"
    tifffile.imwrite(two_planes, np.zeros((2, 2, 6, 7), np.uint16), metadata={"axes": "TZYX"})
    _refusal(two_planes, "unsupported layout")
    zero = tmp_path / "zero.tif"
    with pytest.warns(UserWarning, match="zero-size"):
        tifffile.imwrite(zero, np.zeros((0, 6, 7), np.uint16), metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="empty"):
        inspect_tiff(zero, pixel_size_um=0.1)
    with pytest.raises(InputError, match="no such file"):
        inspect_tiff(tmp_path / "missing.tif")


def test_truncated_file_refused(tmp_path: Path) -> None:
    path = write_tiff(
        tmp_path / "t.tif", np.ones((64, 64), np.uint16), axes="YX", pixel_size_um=0.1
    )
    path.write_bytes(path.read_bytes()[:-4000])
    _refusal(path, "truncated")


def test_damaged_files_say_so(tmp_path: Path) -> None:
    """Damage that tifffile skips over is reported as such, not as a missing pixel size."""
    data = np.ones((2, 64, 64), np.uint16)
    good = write_tiff(tmp_path / "good.ome.tif", data, axes="CYX", pixel_size_um=0.1)
    cut = tmp_path / "cut.ome.tif"  # loses its OME-XML (stored after the pixels)
    cut.write_bytes(good.read_bytes()[:-5000])
    err = _refusal(cut, "damaged or truncated")
    assert "pixel size" not in str(err) and str(err).endswith("Copy or export the file again.")
    head = bytearray(good.read_bytes())
    head[4:8] = (2**31 - 1).to_bytes(4, "little")  # the first IFD lies past the end
    bad_ifd = tmp_path / "ifd.tif"
    bad_ifd.write_bytes(bytes(head))
    _refusal(bad_ifd, "no readable image")
    renamed = tmp_path / "table.tif"
    renamed.write_text("a,b\n1,2\n")
    assert "renamed .tif" in str(_refusal(renamed, "not a readable TIFF"))
    assert inspect_tiff(good).n_channels == 2  # the intact file still reads


def _huge_header(path: Path) -> Path:
    """An OME-TIFF that declares 2 x 40000² uint16 pixels (6.4 GB), written without data
    (a sparse file)."""
    tifffile.imwrite(
        path,
        shape=(2, 40000, 40000),
        dtype=np.uint16,
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.01, "PhysicalSizeY": 0.01},
    )
    return path


def test_huge_declared_but_absent_is_refused_without_allocating(tmp_path: Path) -> None:
    """A header that declares 2 x 40000² pixels (6.4 GB) over 64 KiB of file."""
    import tracemalloc

    path = _huge_header(tmp_path / "huge.ome.tif")
    os.truncate(path, 1 << 16)
    tracemalloc.start()
    try:
        _refusal(path, "truncated")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_huge_declared_dimensions_are_not_allocated(tmp_path: Path) -> None:
    """A 6.4 GB image (a sparse file here) is inspected and opened without reading it all."""
    path = _huge_header(tmp_path / "huge.ome.tif")
    info = inspect_tiff(path)
    assert info.shape == (2, 40000, 40000)
    planes = read_planes(path, info)
    assert planes.shape == (1, 2, 40000, 40000)
    assert max(planes.chunksize[-2:]) == 1024
    assert int(planes[0, 1, -3:, -3:].sum().compute()) == 0


def test_bare_multipage_is_planes(tmp_path: Path) -> None:
    data = np.arange(3 * 6 * 7, dtype=np.uint16).reshape(3, 6, 7)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for page in data:
            tw.write(page, metadata=None, contiguous=False)
    info = inspect_tiff(path, pixel_size_um=0.05)
    assert (info.axes, info.n_planes, info.plane_axis) == ("ZYX", 3, "Z")
    np.testing.assert_array_equal(read_planes(path, info).compute()[:, 0], data)


def test_plain_stack_defaults_to_z_and_says_so(tmp_path: Path, caplog) -> None:
    data = np.arange(4 * 6 * 7, dtype=np.uint16).reshape(4, 6, 7)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data, photometric="minisblack")  # no axes named: tifffile says QYX
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "QYX"
    with caplog.at_level("WARNING", logger="pipeline.io"):
        info = inspect_tiff(path, pixel_size_um=0.1)
    assert (info.axes, info.plane_axis, info.axes_source) == ("ZYX", "Z", "default")
    assert "4 pages are read as Z planes" in info.axes_note and "--axes" in info.axes_note
    assert "read as Z planes" in caplog.text
    assert info.z_step_um is None  # nothing says how far apart the planes are
    as_t = inspect_tiff(path, pixel_size_um=0.1, axes="TYX")
    assert (as_t.axes, as_t.plane_axis, as_t.axes_source, as_t.axes_note) == (
        "TYX", "T", "--axes", None)
    as_c = inspect_tiff(path, pixel_size_um=0.1, axes="CYX")
    assert (as_c.n_channels, as_c.n_planes) == (4, 1)
    np.testing.assert_array_equal(read_planes(path, as_c).compute()[0], data)
    # the two readings of one file are two arrays, also in one graph (no shared dask keys)
    planes_z, planes_c = dask.compute(read_planes(path, info), read_planes(path, as_c))
    assert (planes_z.shape, planes_c.shape) == ((4, 1, 6, 7), (1, 4, 6, 7))
    np.testing.assert_array_equal(planes_z[:, 0], data)
    np.testing.assert_array_equal(planes_c[0], data)
    with pytest.raises(InputError, match="--axes ZCYX has 4 letters but the file has 3"):
        inspect_tiff(path, pixel_size_um=0.1, axes="ZCYX")
    named = write_tiff(tmp_path / "named.tif", data, axes="ZYX", pixel_size_um=0.1)
    assert inspect_tiff(named, axes="TYX").axes == "ZYX"  # metadata that name axes win


def test_axes_flag_for_an_unnamed_4d_stack(tmp_path: Path) -> None:
    data = np.arange(3 * 2 * 6 * 7, dtype=np.uint16).reshape(3, 2, 6, 7)
    path = tmp_path / "qq.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    info = inspect_tiff(path, pixel_size_um=0.1, axes="ZCYX")
    assert (info.axes, info.n_planes, info.n_channels) == ("ZCYX", 3, 2)
    np.testing.assert_array_equal(read_planes(path, info).compute(), data)


@pytest.mark.parametrize("style", ["ome", "imagej"])
def test_z_step_from_metadata_or_flag(tmp_path: Path, style: str) -> None:
    data = np.zeros((3, 16, 16), np.uint16)
    path = write_tiff(tmp_path / "z.tif", data, axes="ZYX", pixel_size_um=0.1, metadata=style,
                      z_step_um=0.25)
    info = inspect_tiff(path)
    assert (info.z_step_um, info.z_step_source) == (pytest.approx(0.25), style)
    assert inspect_tiff(path, z_step_um=0.4).z_step_um == 0.4
    assert inspect_tiff(path, z_step_um=0.4).z_step_source == "override"
    bare = write_tiff(tmp_path / "bare.tif", data, axes="ZYX", pixel_size_um=0.1, metadata=style)
    assert (inspect_tiff(bare).z_step_um, inspect_tiff(bare).z_step_source) == (None, None)
    time = write_tiff(tmp_path / "t.tif", data, axes="TYX", pixel_size_um=0.1, metadata=style)
    assert inspect_tiff(time, z_step_um=0.4).z_step_um is None  # no Z axis
    with pytest.raises(InputError, match="Z step"):
        inspect_tiff(path, z_step_um=-1.0)


def test_axes_setting_is_checked() -> None:
    from pydantic import ValidationError

    from pipeline.config import Settings

    assert Settings(run={"axes": "tcyx"}).run.axes == "TCYX"
    for bad in ("XYZ", "ZTYX", "ZZYX", "QYX"):
        with pytest.raises(ValidationError, match="axes"):
            Settings(run={"axes": bad})


def test_discover(tmp_path: Path) -> None:
    for name in ("b.TIF", "a.tif", "c.tiff", "notes.txt", "d.png", ".hidden.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.TIFF").write_bytes(b"x")
    assert [p.name for p in discover_tiffs(tmp_path)] == ["a.tif", "b.TIF", "c.tiff"]
    assert [p.name for p in discover_tiffs(tmp_path, recursive=True)][-1] == "e.TIFF"
    with pytest.raises(InputError, match="no such folder"):
        discover_tiffs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .tif"):
        discover_tiffs(tmp_path / "empty")


def test_input_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(InputError("x.tif", "it is RGB", "Split it")))
    assert (str(err), err.reason, err.path) == (
        "x.tif: it is RGB. Split it.",
        "it is RGB",
        Path("x.tif"),
    )
    assert isinstance(err, ValueError)


def test_channels_last_files_read_as_channels(tmp_path: Path) -> None:
    """numpy's (Y, X, C) saved by tifffile: two channels become samples per pixel, three
    16-bit channels an RGB file, and a page-by-page (Y, X, 2) array reads right with
    --axes YXC; an 8-bit RGB (a display export) is still refused."""
    rng = np.random.default_rng(3)
    cyx = rng.integers(0, 4000, (3, 40, 48), dtype=np.uint16)
    res = {"resolution": (1 / 0.02e-4,) * 2, "resolutionunit": "CENTIMETER"}
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.moveaxis(cyx[:2], 0, -1), photometric="minisblack",
                     planarconfig="contig", **res)
    rgb = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb, np.moveaxis(cyx, 0, -1), **res)
    for path, n in ((two, 2), (rgb, 3)):
        info = inspect_tiff(path)
        assert (info.axes, info.n_channels) == ("YXC", n)
        assert f"{n} samples per pixel are read as {n} channels" in info.axes_note
        np.testing.assert_array_equal(read_planes(path, info).compute()[0], cyx[:n])
    pages = tmp_path / "pages.tif"
    tifffile.imwrite(pages, np.moveaxis(cyx[:2], 0, -1), **res)  # 40 pages of 48 x 2
    guessed = inspect_tiff(pages)
    assert guessed.axes == "ZYX" and "--axes YXC" in guessed.axes_note
    info = inspect_tiff(pages, axes="YXC")
    assert (info.axes, info.n_channels, info.axes_source) == ("YXC", 2, "--axes")
    np.testing.assert_array_equal(read_planes(pages, info).compute()[0], cyx[:2])
    rgb8 = tmp_path / "rgb8.tif"
    tifffile.imwrite(rgb8, np.moveaxis(cyx, 0, -1).astype(np.uint8), **res)
    assert "Split Channels" in str(_refusal(rgb8, "8-bit colour image"))
