"""TIFF input: find files, read their layout and pixel size without pixels, read planes lazily.

Supported layouts (``series.axes`` after normalisation) are ``YX``, ``CYX``, ``ZYX``,
``TYX``, ``ZCYX`` and ``TCYX``; ``CZYX``/``CTYX`` (common in OME-TIFF) are read too. Every
other file is refused with an :class:`InputError` that names the file and says what to do.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "cell.ome.tif"
>>> _ = write_tiff(path, np.zeros((2, 8, 8), np.uint16), axes="CYX", pixel_size_um=0.02)
>>> info = inspect_tiff(path)
>>> info.axes, info.n_channels, info.pixel_size_um, info.pixel_size_source
('CYX', 2, 0.02, 'ome')
>>> read_planes(path, info).shape
(1, 2, 8, 8)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import tifffile

from pipeline.errors import InputError  # defined with its siblings; re-exported here
from pipeline.io.atomic import atomic_file

__all__ = [
    "SUPPORTED_AXES",
    "ImageInfo",
    "InputError",
    "PixelSizeSource",
    "discover_tiffs",
    "inspect_tiff",
    "read_planes",
    "write_tiff",
]

log = logging.getLogger(__name__)

PixelSizeSource = Literal["ome", "imagej", "resolution", "override"]
SUPPORTED_AXES = ("YX", "CYX", "ZYX", "TYX", "ZCYX", "TCYX", "CZYX", "CTYX")
_TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_CHUNK_YX = 1024
_MAX_RESOLUTION_PIXEL_UM = 10.0  # a bare TIFF resolution beyond this is a print DPI, not optics
_AXES_HINT = f"Re-save it as OME-TIFF or ImageJ hyperstack, axes {', '.join(SUPPORTED_AXES[:6])}"
_UM_PER_UNIT = {
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "angstrom": 1e-4, "ångström": 1e-4,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
}  # fmt: skip


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_tiff` learnt about a file, with no pixel read.

    ``axes`` and ``shape`` are in the file's order (normalised axis letters); ``n_planes`` is
    the length of the Z or T axis (``plane_axis``), 1 without one. ``axes_source`` says where
    the axes came from (``"default"``: a plain multi-page file read as Z planes, explained
    in ``axes_note``); ``z_step_um`` is the Z spacing (None: unknown) and ``z_step_source``
    where it came from.
    """

    path: Path
    axes: str
    shape: tuple[int, ...]
    dtype: str
    pixel_size_um: float | None
    pixel_size_source: PixelSizeSource | None
    n_channels: int
    n_planes: int
    plane_axis: Literal["Z", "T"] | None
    axes_source: Literal["metadata", "--axes", "default"] = "metadata"
    axes_note: str | None = None
    z_step_um: float | None = None
    z_step_source: Literal["ome", "imagej", "override"] | None = None


def discover_tiffs(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """The ``.tif``/``.tiff`` files (any case) in ``folder``, sorted.

    Other files, and hidden ones (``.name``: partial outputs, macOS ``._`` files), are ignored.

    Raises
    ------
    InputError
        If ``folder`` is not a directory or holds no TIFF.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder", "Check the path given as input")
    entries = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(
        p
        for p in entries
        if p.suffix.lower() in _TIFF_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        where = "or its subfolders " if recursive else ""
        raise InputError(
            folder,
            f"the folder {where}holds no .tif or .tiff file",
            "Point to the folder with the images" + ("" if recursive else " or pass --recursive"),
        )
    return found


def _um_per_unit(unit: Any) -> float | None:
    if not isinstance(unit, str):
        return None
    key = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("\u03bc", "µ")
    return _UM_PER_UNIT.get(key.lower().replace("\u212b", "å"))


def _ome_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        log.warning("%s: unreadable OME-XML, ignoring it", tif.filehandle.path)
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    sizes = []
    for ax in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{ax}", pixels.get("PhysicalSizeX"))
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")  # the OME schema's default
        factor = _um_per_unit(unit)
        if factor is None:
            raise InputError(
                tif.filehandle.path, f"OME PhysicalSize{ax}Unit {unit!r} is not a length"
            )
        try:
            size = float(value) * factor
        except ValueError:
            size = float("nan")
        if not (np.isfinite(size) and size > 0):
            log.warning("%s: ignoring OME PhysicalSize%s=%r", tif.filehandle.path, ax, value)
            return None
        sizes.append(size)
    return sizes[0], sizes[1]


def _resolution_pixel_size(page: Any, unit_factor: float) -> tuple[float, float] | None:
    xres, yres = page.resolution
    if not (xres > 0 and yres > 0) or (xres, yres) == (1.0, 1.0):
        return None
    return unit_factor / xres, unit_factor / yres


def _pixel_size(tif: tifffile.TiffFile) -> tuple[tuple[float, float], PixelSizeSource] | None:
    ome = _ome_pixel_size(tif)
    if ome is not None:
        return ome, "ome"
    page = tif.pages.first
    if tif.is_imagej:
        factor = _um_per_unit((tif.imagej_metadata or {}).get("unit"))
        if factor is not None and (size := _resolution_pixel_size(page, factor)) is not None:
            return size, "imagej"
    unit = {
        tifffile.RESUNIT.CENTIMETER: 1e4,
        tifffile.RESUNIT.MILLIMETER: 1e3,
        tifffile.RESUNIT.MICROMETER: 1.0,
    }.get(page.resolutionunit)
    if unit is not None and (size := _resolution_pixel_size(page, unit)) is not None:
        if max(size) <= _MAX_RESOLUTION_PIXEL_UM:
            return size, "resolution"
        log.warning(
            "%s: ignoring TIFF resolution %.4g µm/pixel (a print DPI, not a pixel size)",
            tif.filehandle.path,
            size[0],
        )
    return None


_UNNAMED = set("QI")  # tifffile's letters for an axis the metadata do not name


def _normalise_axes(path: Path, axes: str, shape: tuple[int, ...], declared: str | None = None
                    ) -> tuple[str, Literal["metadata", "--axes", "default"], str | None]:
    """Map tifffile's axis codes onto ours, or refuse the file.

    Returns the axes, their source and a note for the user. Axes the metadata do not name
    (tifffile's ``Q`` or ``I``) take ``declared`` (``--axes``) when given; a single such axis
    before ``YX`` is otherwise read as Z planes, and the note says so.
    """
    if "S" in axes:
        n = shape[axes.index("S")]
        reason = "it is RGB/RGBA colour" if n in (3, 4) else f"it has {n} samples per pixel"
        raise InputError(path, reason, "Save one grey-level image per channel (axes CYX)")
    if axes[-2:] != "YX":
        raise InputError(path, f"axes {axes!r} do not end in YX", _AXES_HINT)
    lead, source, note = axes[:-2], "metadata", None
    if set(lead) & _UNNAMED:
        if declared is not None:
            if len(declared) != len(axes):
                raise InputError(path, f"--axes {declared} has {len(declared)} letters but "
                                 f"the file has {len(axes)} dimensions (shape {shape})",
                                 "Pass --axes with one letter per dimension, e.g. ZYX")
            lead, source = declared[:-2], "--axes"
        elif len(lead) == 1:
            lead, source = "Z", "default"
            note = (f"the file does not name its axes ({axes}): its {shape[0]} pages are read "
                    "as Z planes; pass --axes TYX for time points or --axes CYX for channels")
            log.warning("%s: %s", path, note)
        else:
            raise InputError(path, f"the file does not name its axes (unknown axis "
                             f"{axes[0]!r} in axes {axes!r}, shape {shape})",
                             "Pass --axes, e.g. --axes ZCYX or --axes TCYX. Re-save it as "
                             "OME-TIFF or ImageJ hyperstack to keep the axes in the file")
    elif declared is not None and declared != axes:
        log.info("%s: its metadata name axes %s; --axes %s applies only to files whose "
                 "metadata do not", path, axes, declared)
    unknown = sorted(set(lead) - set("CZT"))
    if unknown or lead + "YX" not in SUPPORTED_AXES:
        what = f"unknown axis {', '.join(map(repr, unknown))}" if unknown else "unsupported layout"
        raise InputError(path, f"{what} in axes {axes!r} (shape {shape})", _AXES_HINT)
    return lead + "YX", source, note  # type: ignore[return-value]


def _z_step(tif: tifffile.TiffFile) -> tuple[float, Literal["ome", "imagej"]] | None:
    """The Z spacing in µm from OME ``PhysicalSizeZ`` or ImageJ ``spacing``, if stated."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            return None
        pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
        if pixels is not None and pixels.get("PhysicalSizeZ") is not None:
            factor = _um_per_unit(pixels.get("PhysicalSizeZUnit", "µm"))
            try:
                z = float(pixels.get("PhysicalSizeZ")) * (factor or float("nan"))
            except ValueError:
                z = float("nan")
            if np.isfinite(z) and z > 0:
                return z, "ome"
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        factor = _um_per_unit(meta.get("unit"))
        spacing = meta.get("spacing")
        if factor is not None and isinstance(spacing, int | float) and spacing > 0:
            return float(spacing) * factor, "imagej"
    return None


def _check_data_present(path: Path, tif: tifffile.TiffFile, series: Any) -> None:
    size = os.path.getsize(path)
    page = series.keyframe
    needed = int(np.prod(getattr(page, "chunked", ()) or (0,)))
    if needed and len(page.dataoffsets) < needed:  # e.g. a damaged width: no pixels behind it
        kind = "tiles" if page.is_tiled else "strips"
        raise InputError(
            path,
            f"the file is damaged: its image of {page.imagelength} x {page.imagewidth} pixels needs "
            f"{needed} {kind} but the file lists {len(page.dataoffsets)}",
            "Copy or export the file again",
        )
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
    if series.dataoffset is not None:
        ends.append(series.dataoffset + series.nbytes)
    if ends and max(ends) > size:
        raise InputError(
            path,
            "the file is truncated (image data runs past its end)",
            "Copy or export the file again",
        )


class _ThreadErrors(logging.Filter):
    """Takes the ERROR records that tifffile logs in this thread (damage it skipped): they
    become part of the :class:`InputError` that names the file, so they are not logged too
    (a refused file is reported once)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.thread == self.thread:
            self.messages.append(record.getMessage())
            return False
        return True


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    taken = _ThreadErrors()
    logger = logging.getLogger("tifffile")
    logger.addFilter(taken)
    try:
        yield taken.messages
    finally:
        logger.removeFilter(taken)


def inspect_tiff(path: str | os.PathLike[str], *, pixel_size_um: float | None = None,
                 axes: str | None = None, z_step_um: float | None = None) -> ImageInfo:
    """Read a TIFF's layout, dtype and pixel size from its metadata (no pixel data).

    Parameters
    ----------
    path : path
        The TIFF file.
    pixel_size_um : float, optional
        Overrides the metadata (source ``"override"``).
    axes : str, optional
        Axes of a file whose metadata do not name them (``--axes``, e.g. ``"ZYX"``).
    z_step_um : float, optional
        Z spacing in µm; overrides the metadata (source ``"override"``).

    Raises
    ------
    InputError
        For an empty, truncated, damaged or non-TIFF file, RGB, complex or non-numeric
        data, an axis that is not understood, an empty dimension, X/Y pixel sizes that differ
        by more than 1 %, or no pixel size in the metadata and no override.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file", "Check the path")
    if os.path.getsize(path) == 0:
        raise InputError(path, "the file is empty (0 bytes)", "Copy or export the file again")
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(
            path,
            f"pixel size override {pixel_size_um!r} is not positive",
            "Pass --pixel-size in micrometres",
        )
    try:
        with _tifffile_errors() as damage, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(
                    path,
                    "the TIFF holds no readable image (its header or first page is damaged)",
                    "Copy or export the file again",
                )
            if len(tif.series) > 1:
                log.info("%s: %d image series, using the first", path, len(tif.series))
            series = tif.series[0]
            series_axes = series.axes
            shape, dtype = tuple(int(n) for n in series.shape), series.dtype
            photometric = series.keyframe.photometric
            if 0 in shape:
                raise InputError(
                    path,
                    f"a dimension is empty (axes {series_axes!r}, shape {shape})",
                    "Copy or export the file again",
                )
            _check_data_present(path, tif, series)
            if damage:  # tifffile skipped a part it could not read (a tag past the end, ...)
                raise InputError(
                    path,
                    f"the file is damaged or truncated (tifffile: {damage[0]})",
                    "Copy or export the file again",
                )
            found = None if pixel_size_um is not None else _pixel_size(tif)
            z_found = None if z_step_um is not None else _z_step(tif)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(
            path,
            f"not a readable TIFF ({type(exc).__name__}: {exc})",
            "Check that it is a TIFF (not another format renamed .tif) and complete; "
            "copy or export it again",
        ) from exc
    if photometric in (
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.PALETTE,
        tifffile.PHOTOMETRIC.YCBCR,
    ):
        raise InputError(
            path,
            f"it is a colour image ({photometric.name})",
            "Save one grey-level image per channel (axes CYX)",
        )
    if dtype.kind == "c":
        raise InputError(
            path,
            f"complex data ({dtype}) is not an intensity image",
            "Save the magnitude as a real-valued image",
        )
    if dtype.kind not in "uif":
        raise InputError(path, f"data type {dtype} is not a number", "Save integers or floats")
    declared = axes
    axes, axes_source, axes_note = _normalise_axes(path, series_axes, shape, declared)
    if pixel_size_um is not None:
        size_um, source = float(pixel_size_um), "override"
    elif found is None:
        raise InputError(
            path,
            "no pixel size in its metadata (OME or ImageJ)",
            "Pass --pixel-size in micrometres",
        )
    else:
        (sx, sy), source = found
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise InputError(
                path,
                f"pixel sizes differ in X ({sx:.6g} µm) and Y ({sy:.6g} µm)",
                "Resample to square pixels or pass --pixel-size",
            )
        size_um = float(sx)
    plane_axis = next((a for a in axes if a in "ZT"), None)
    if z_step_um is not None and not (np.isfinite(z_step_um) and z_step_um > 0):
        raise InputError(path, f"Z step {z_step_um!r} is not positive",
                         "Pass --z-step in micrometres")
    z_step, z_source = ((float(z_step_um), "override") if z_step_um is not None
                        else z_found if z_found is not None else (None, None))
    if plane_axis != "Z":
        z_step, z_source = None, None
    return ImageInfo(
        path=path,
        axes=axes,
        shape=shape,
        dtype=str(dtype.newbyteorder("=")),
        pixel_size_um=size_um,
        pixel_size_source=source,  # type: ignore[arg-type]
        n_channels=shape[axes.index("C")] if "C" in axes else 1,
        n_planes=shape[axes.index(plane_axis)] if plane_axis else 1,
        plane_axis=plane_axis,  # type: ignore[arg-type]
        axes_source=axes_source,
        axes_note=axes_note,
        z_step_um=z_step,
        z_step_source=z_source,  # type: ignore[arg-type]
    )


@functools.lru_cache(maxsize=16)
def _open_array(path: str, mtime_ns: int, size: int) -> Any:
    """A read-only array view of series 0, level 0; cached per process and file version.

    Uncompressed contiguous data (ImageJ, most OME-TIFF) is memory-mapped, so a chunk reads
    only its bytes even when a page is a single strip; anything else goes through tifffile's
    zarr store, which reads whole strips or tiles.
    """
    try:
        return tifffile.memmap(path, mode="r", series=0)
    except ValueError:
        import zarr

        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        return zarr.open(store, mode="r", zarr_format=2)


class _PlaneSource:
    """An array-like in (P, C, Y, X) order over a TIFF, opened lazily in each process."""

    def __init__(self, path: Path, axes: str, shape: tuple[int, ...], dtype: str) -> None:
        self.path = str(path)
        self.axes = axes
        self.file_shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        sizes = dict(zip(axes, shape, strict=True))
        plane = next((a for a in axes if a in "ZT"), None)
        self.shape = (sizes.get(plane, 1), sizes.get("C", 1), sizes["Y"], sizes["X"])
        self.ndim = 4

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (5 - len(key)) + key[at + 1 :]
        key = key + (slice(None),) * (4 - len(key))
        drop = tuple(0 if isinstance(k, int | np.integer) else slice(None) for k in key)
        key = tuple(
            slice(k, (k + 1) or None) if isinstance(k, int | np.integer) else k for k in key
        )
        if not all(isinstance(k, slice) for k in key):
            raise TypeError(f"only integers and slices index a TIFF source, got {key!r}")
        canon = {"Z": 0, "T": 0, "C": 1, "Y": 2, "X": 3}
        file_key = tuple(key[canon[a]] for a in self.axes)
        stat = os.stat(self.path)
        array = _open_array(self.path, stat.st_mtime_ns, stat.st_size)
        if array.shape != self.file_shape:  # a memory map may keep singleton axes
            array = array.reshape(self.file_shape)
        block = np.array(array[file_key], dtype=self.dtype)  # a native-order copy
        order = [canon[a] for a in self.axes]
        for missing in (1, 0):  # add the absent C, then P, axis in front
            if missing not in order:
                block, order = block[np.newaxis], [missing, *order]
        return np.transpose(block, np.argsort(order))[drop]


def read_planes(path: str | os.PathLike[str], info: ImageInfo) -> da.Array:
    """A lazy ``(P, C, Y, X)`` dask array over the file, chunked by plane and ≤ 1024² in YX.

    Each chunk opens the file in the process that computes it, so the graph can be sent to
    distributed workers; nothing is read until the array is computed.
    """
    source = _PlaneSource(Path(path), info.axes, info.shape, info.dtype)
    p, c, y, x = source.shape
    chunks = (1, c, min(y, _MAX_CHUNK_YX), min(x, _MAX_CHUNK_YX))
    name = f"tiff-planes-{tifffile.__version__}-{Path(path).resolve()}-{os.stat(path).st_mtime_ns}"
    return da.from_array(source, chunks=chunks, name=name, meta=np.empty((0,) * 4, source.dtype))


def write_tiff(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    axes: str,
    pixel_size_um: float,
    metadata: Literal["ome", "imagej"] = "ome",
    compression: str | None = None,
    z_step_um: float | None = None,
) -> Path:
    """Write ``data`` (uint8, uint16 or float32) as OME-TIFF or an ImageJ hyperstack.

    Parameters
    ----------
    path : path
        Destination; written atomically.
    data : ndarray
        The pixels, laid out as ``axes``.
    axes : str
        One of :data:`SUPPORTED_AXES` (ImageJ needs Z/T before C).
    pixel_size_um : float
        Stored as OME ``PhysicalSizeX/Y`` in µm, or as ImageJ resolution with ``unit=um``.
    metadata : {"ome", "imagej"}
        Which metadata convention to write.
    compression : str, optional
        A tifffile compression name, e.g. ``"zlib"``.
    z_step_um : float, optional
        Z spacing, stored as OME ``PhysicalSizeZ`` or ImageJ ``spacing``.
    """
    data = np.asarray(data)
    axes = axes.upper()
    if axes not in SUPPORTED_AXES or len(axes) != data.ndim:
        raise ValueError(f"axes {axes!r} do not describe data of shape {data.shape}")
    if data.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"write uint8, uint16 or float32 data, not {data.dtype}; cast it first")
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    kwargs: dict[str, Any] = {"compression": compression}
    if metadata == "ome":
        kwargs.update(
            ome=True,
            metadata={
                "axes": axes,
                "PhysicalSizeX": pixel_size_um,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": pixel_size_um,
                "PhysicalSizeYUnit": "µm",
                **({"PhysicalSizeZ": z_step_um, "PhysicalSizeZUnit": "µm"}
                   if z_step_um else {}),
            },
        )
    elif metadata == "imagej":
        if axes.startswith("C") and len(axes) == 4:
            raise ValueError(f"ImageJ hyperstacks need Z/T before C, got {axes!r}")
        kwargs.update(
            imagej=True,
            resolution=(1 / pixel_size_um, 1 / pixel_size_um),
            metadata={"axes": axes, "unit": "um",
                      **({"spacing": z_step_um} if z_step_um else {})},
        )
    else:
        raise ValueError(f"metadata must be 'ome' or 'imagej', got {metadata!r}")
    path = Path(path)
    with atomic_file(path) as tmp:
        tifffile.imwrite(tmp, data, **kwargs)
    return path
