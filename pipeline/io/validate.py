"""Inspection: open a TIFF, detect damage, validate its layout and metadata, read no pixels
(but one strip or tile of a compressed file, to check that it decodes).

:func:`inspect_tiff` is the one gate a file passes before anything reads its pixels. Every
refusal is an :class:`~pipeline.errors.InputError` whose one-line message names the file,
the problem and what to do. Damage is found three ways: tifffile raises (not a TIFF, a
header it cannot follow), tifffile logs an ERROR for a part it skipped (a tag or an IFD past
the end: :func:`tifffile_damage` collects those lines so that they become the refusal instead
of being logged), or the first page's strips or tiles are missing or run past the end of the
file (:func:`check_data_present`, which reads offsets only, never the pixels).

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from pipeline.io.write import write_tiff
>>> path = write_tiff(Path(tempfile.mkdtemp()) / "z.tif", np.zeros((3, 8, 8), np.uint16),
...                   axes="ZYX", pixel_size_um=0.05, z_step_um=0.2)
>>> info = inspect_tiff(path)
>>> info.axes, info.n_planes, info.pixel_size_um, info.z_step_um
('ZYX', 3, 0.05, 0.2)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from pipeline.errors import InputError
from pipeline.io.metadata import ImageInfo, channel_names, normalise_axes, pixel_size, z_step

__all__ = ["check_data_present", "check_decodable", "inspect_tiff", "skipped_series_note",
           "tifffile_damage"]

log = logging.getLogger(__name__)

_AGAIN = "Copy or export the file again"


def check_data_present(path: Path, series: tifffile.TiffPageSeries) -> None:
    """Refuse a series whose first page lacks strips or tiles, or whose data pass the file's end.

    Reads only the offsets tifffile already parsed; a header that declares gigabytes over a
    few kilobytes of file is refused without allocating them.
    """
    size = os.path.getsize(path)
    page = series.keyframe
    needed = int(np.prod(getattr(page, "chunked", ()) or (0,)))
    if needed and len(page.dataoffsets) < needed:  # e.g. a damaged width: no pixels behind it
        kind = "tiles" if page.is_tiled else "strips"
        raise InputError(
            path,
            f"the file is damaged: its image of {page.imagelength} x {page.imagewidth} pixels needs "
            f"{needed} {kind} but the file lists {len(page.dataoffsets)}",
            _AGAIN,
        )
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
    if series.dataoffset is not None:
        ends.append(series.dataoffset + series.nbytes)
    if ends and max(ends) > size:
        raise InputError(path, "the file is truncated (image data runs past its end)", _AGAIN)


def skipped_series_note(series: list[Any]) -> str | None:
    """What a file of several image series loses: only the first is read. None for one.

    A multi-position acquisition saved as one OME-TIFF (Micro-Manager, Bio-Formats exports)
    holds a series per position; vendors' files may add thumbnails. chromarate reads one
    image per file, so the others are named here (warned, recorded, flagged).

    >>> class S:
    ...     def __init__(self, shape, axes): self.shape, self.axes = shape, axes
    >>> skipped_series_note([S((2, 64, 64), "CYX"), S((2, 64, 64), "CYX")])[:62]
    'the file holds 2 image series (positions, wells or thumbnails)'
    """
    if len(series) < 2:
        return None

    def text(s: Any) -> str:
        return f"{' x '.join(str(int(n)) for n in s.shape)} {s.axes}"

    others = [text(s) for s in series[1:]]
    listed = ", ".join(others[:4]) + (f", and {len(others) - 4} more" if len(others) > 4 else "")
    return (f"the file holds {len(series)} image series (positions, wells or thumbnails); "
            f"only the first ({text(series[0])}) is read, not the other {len(others)} "
            f"({listed}): chromarate split-series FILE --out FOLDER writes each as a TIFF "
            "of its own")


def check_decodable(path: Path, series: tifffile.TiffPageSeries, fh: Any) -> None:
    """Decode the first page's first strip or tile: a codec this installation lacks (LZW,
    JPEG, JPEG 2000 and Zstandard need the ``imagecodecs`` package) or a chunk that does not
    decode is refused here, before any work, not halfway through a run. Uncompressed pages
    are not read."""
    page = series.keyframe
    compression = getattr(page, "compression", 1)
    if int(compression) == 1:  # COMPRESSION.NONE
        return
    index = next((i for i, n in enumerate(page.databytecounts) if n), None)
    if index is None:
        return
    name = getattr(compression, "name", str(compression))
    fh.seek(page.dataoffsets[index])
    data = fh.read(page.databytecounts[index])
    try:
        page.decode(data, index, jpegtables=getattr(page, "jpegtables", None),
                    jpegheader=getattr(page, "jpegheader", None))  # as tifffile's reader
    except Exception as exc:  # tifffile raises ValueError, KeyError or ImportError here
        text = str(exc)
        if isinstance(exc, ImportError) or "requires the" in text:
            raise InputError(
                path,
                f"its pixels are compressed with {name}, which this installation cannot "
                f"decode ({type(exc).__name__}: {text})",
                "Install the codecs: pip install imagecodecs (an installation of chromarate "
                "brings them), or save the file uncompressed",
            ) from exc
        raise InputError(path, f"the file is damaged: its first {name}-compressed "
                         f"{'tile' if page.is_tiled else 'strip'} does not decode "
                         f"({type(exc).__name__}: {text})", _AGAIN) from exc


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
def tifffile_damage() -> Iterator[list[str]]:
    """Collect (and hold back) the ERROR lines tifffile logs in this thread meanwhile."""
    taken = _ThreadErrors()
    logger = logging.getLogger("tifffile")
    logger.addFilter(taken)
    try:
        yield taken.messages
    finally:
        logger.removeFilter(taken)


def _check_override(path: Path, value: float | None, what: str, flag: str) -> None:
    if value is not None and not (np.isfinite(value) and value > 0):
        raise InputError(path, f"{what} {value!r} is not positive",
                         f"Pass {flag} in micrometres")


def _check_pixels(path: Path, photometric: Any, dtype: np.dtype) -> None:
    if photometric in (tifffile.PHOTOMETRIC.PALETTE, tifffile.PHOTOMETRIC.YCBCR) or (
            photometric == tifffile.PHOTOMETRIC.RGB and dtype.itemsize == 1):
        raise InputError(
            path,
            f"it is an 8-bit colour image ({photometric.name}), most likely a display export "
            "(contrast-stretched colours, not the recorded intensities)",
            "Export the raw channels from the acquisition software or Fiji (Image > Color > "
            "Split Channels on the original, not an RGB snapshot), one grey-level image per "
            "channel (axes CYX)",
        )
    if dtype.kind == "c":
        raise InputError(
            path,
            f"complex data ({dtype}) is not an intensity image",
            "Save the magnitude as a real-valued image",
        )
    if dtype.kind not in "uif":
        raise InputError(path, f"data type {dtype} is not a number", "Save integers or floats")


def inspect_tiff(path: str | os.PathLike[str], *, pixel_size_um: float | None = None,
                 axes: str | None = None, z_step_um: float | None = None,
                 warn: bool = True) -> ImageInfo:
    """Read a TIFF's layout, dtype and pixel size from its metadata (of the pixels, only the
    first strip or tile of a compressed file is decoded, to check its codec).

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
    warn : bool
        Log the notes for the user (axes assumed, series not read) as warnings; False when
        a file already inspected is opened again to read it.

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
        raise InputError(path, "the file is empty (0 bytes)", _AGAIN)
    _check_override(path, pixel_size_um, "pixel size override", "--pixel-size")
    try:
        with tifffile_damage() as damage, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(
                    path, "the TIFF holds no readable image (its header or first page is damaged)",
                    _AGAIN)
            series = tif.series[0]
            series_note = skipped_series_note(tif.series)
            series_axes = series.axes
            shape, dtype = tuple(int(n) for n in series.shape), series.dtype
            photometric = series.keyframe.photometric
            if 0 in shape:
                raise InputError(
                    path, f"a dimension is empty (axes {series_axes!r}, shape {shape})", _AGAIN)
            check_data_present(path, series)
            check_decodable(path, series, tif.filehandle)
            if damage:  # tifffile skipped a part it could not read (a tag past the end, ...)
                raise InputError(
                    path, f"the file is damaged or truncated (tifffile: {damage[0]})", _AGAIN)
            found = None if pixel_size_um is not None else pixel_size(tif)
            z_found = None if z_step_um is not None else z_step(tif)
            c_axis = max(series_axes.find("C"), series_axes.find("S"))
            names = channel_names(tif, shape[c_axis] if c_axis >= 0 else 1)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(
            path,
            f"not a readable TIFF ({type(exc).__name__}: {exc})",
            "Check that it is a TIFF (not another format renamed .tif) and complete; "
            "copy or export it again",
        ) from exc
    _check_pixels(path, photometric, dtype)
    axes, axes_source, axes_note = normalise_axes(path, series_axes, shape, axes,
                                                  samples_as_channels=True)
    for note in (axes_note, series_note) if warn else ():
        if note:
            log.warning("%s: %s", path, note)
    if pixel_size_um is not None:
        size_um, source = float(pixel_size_um), "override"
    elif found is None:
        raise InputError(
            path,
            "no pixel size in its metadata (OME, ImageJ, MetaMorph or TIFF resolution)",
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
    _check_override(path, z_step_um, "Z step", "--z-step")
    z, z_source = ((float(z_step_um), "override") if z_step_um is not None
                   else z_found if z_found is not None else (None, None))
    if plane_axis != "Z":
        z, z_source = None, None
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
        z_step_um=z,
        z_step_source=z_source,  # type: ignore[arg-type]
        series_note=series_note,
        channel_names=names,
    )
