"""Metadata of a TIFF: axes, pixel size and Z step, from OME-XML, ImageJ or the TIFF tags.

One path for OME-XML: tifffile parses it; :mod:`pipeline.io.ome_xml` picks the first image's
``Pixels`` attributes and converts their lengths to µm (its names are re-exported here).
ImageJ files state a ``unit`` and store the pixel size as the TIFF resolution; a bare TIFF
resolution in cm, mm or µm is used when it is plausible as a pixel size (≤ 10 µm; more is a
print DPI).

Nothing here reads pixels. :func:`pipeline.io.validate.inspect_tiff` calls these on an open
:class:`tifffile.TiffFile` and turns what they find into an :class:`ImageInfo`.

Examples
--------
>>> normalise_axes(Path("a.tif"), "CYX", (2, 8, 8))
('CYX', 'metadata', None)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tifffile

from pipeline.errors import InputError
from pipeline.io.ome_xml import (
    UM_PER_UNIT,
    length_um,
    ome_channel_names,
    ome_pixels,
    ome_pixels_size,
    ome_z_step,
    um_per_unit,
)

__all__ = [
    "AXES_HINT",
    "SUPPORTED_AXES",
    "UM_PER_UNIT",
    "ImageInfo",
    "PixelSizeSource",
    "metaseries_pixel_size",
    "names_every_channel",
    "normalise_axes",
    "ome_z_step",
    "READ_AXES",
    "ome_pixels",
    "pixel_size",
    "um_per_unit",
    "z_step",
]

log = logging.getLogger(__name__)

PixelSizeSource = Literal["ome", "imagej", "metaseries", "resolution", "override"]
AxesSource = Literal["metadata", "--axes", "default"]
SUPPORTED_AXES = ("YX", "CYX", "ZYX", "TYX", "ZCYX", "TCYX", "CZYX", "CTYX")
"""Layouts written by :func:`write_tiff` and read (the last two are common in OME-TIFF)."""
READ_AXES = SUPPORTED_AXES + ("YXC", "ZYXC", "TYXC")
"""Layouts read: :data:`SUPPORTED_AXES` and channels last (numpy's ``(Y, X, C)`` saved by
tifffile as samples per pixel, or page by page and named with ``--axes YXC``)."""
AXES_HINT = f"Re-save it as OME-TIFF or ImageJ hyperstack, axes {', '.join(SUPPORTED_AXES[:6])}"
MAX_RESOLUTION_PIXEL_UM = 10.0  # a bare TIFF resolution beyond this is a print DPI, not optics
_UNNAMED = set("QI")  # tifffile's letters for an axis the metadata do not name


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`~pipeline.io.inspect_tiff` learnt about a file, with no pixel read.

    ``axes`` and ``shape`` are in the file's order (normalised axis letters); ``n_planes`` is
    the length of the Z or T axis (``plane_axis``), 1 without one. ``axes_source`` says where
    the axes came from (``"default"``: a plain multi-page file read as Z planes, explained
    in ``axes_note``); ``z_step_um`` is the Z spacing (None: unknown) and ``z_step_source``
    where it came from. ``series_note`` says that the file holds further image series
    (positions, wells, thumbnails) that are not read (None: it holds one);
    ``channel_names`` the names the metadata give the channels (None: none).
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
    axes_source: AxesSource = "metadata"
    axes_note: str | None = None
    z_step_um: float | None = None
    z_step_source: Literal["ome", "imagej", "override"] | None = None
    series_note: str | None = None
    channel_names: tuple[str, ...] | None = None


# ------------------------------------------------------------------------------ units


def _tif_ome_pixels(tif: tifffile.TiffFile) -> dict[str, Any] | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    return ome_pixels(tif.ome_metadata)


def _ome_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    try:
        pixels = _tif_ome_pixels(tif)
    except ValueError:
        log.warning("%s: unreadable OME-XML, ignoring it", tif.filehandle.path)
        return None
    return ome_pixels_size(pixels, tif.filehandle.path)


def channel_names(tif: tifffile.TiffFile, n_channels: int) -> tuple[str, ...] | None:
    """The names the file gives its ``n_channels`` channels (OME ``Channel Name``, or ImageJ
    ``Labels`` when there is one per channel, or one per slice of a hyperstack repeating the
    channels' names), None when it names none or not all."""
    names: list[Any] = []
    try:
        pixels = _tif_ome_pixels(tif)
    except ValueError:
        pixels = None
    if pixels:
        names = list(ome_channel_names(pixels))
    elif tif.is_imagej:
        labels = (tif.imagej_metadata or {}).get("Labels")
        names = list(labels) if isinstance(labels, list | tuple) else []
        # a hyperstack labels every slice, channels fastest (XYCZT): one cycle per Z or T
        if (n_channels > 1 and len(names) > n_channels and len(names) % n_channels == 0
                and all(n == names[i % n_channels] for i, n in enumerate(names))):
            names = names[:n_channels]
    named = names_every_channel(names, n_channels)
    return None if named is None else tuple(n.strip() for n in named)


def names_every_channel(names: Sequence[Any], n_channels: int) -> tuple[str, ...] | None:
    """``names`` when it holds one non-blank name per channel, None otherwise.

    >>> names_every_channel(["DAPI", "H3K9me3"], 2), names_every_channel(["DAPI", ""], 2)
    (('DAPI', 'H3K9me3'), None)
    """
    if len(names) != n_channels or not all(isinstance(n, str) and n.strip() for n in names):
        return None
    return tuple(names)


# ------------------------------------------------------------------------------ pixel size


def _resolution_pixel_size(page: Any, unit_factor: float) -> tuple[float, float] | None:
    xres, yres = page.resolution
    if not (xres > 0 and yres > 0) or (xres, yres) == (1.0, 1.0):
        return None
    return unit_factor / xres, unit_factor / yres


def metaseries_pixel_size(tif: tifffile.TiffFile) -> tuple[float, float] | None:
    """The (X, Y) pixel size in µm that MetaMorph/MetaSeries metadata state (its
    ``PlaneInfo``: ``spatial-calibration-x``/``-y`` in ``spatial-calibration-units``, when
    ``spatial-calibration-state`` is on), or None. Widefield and spinning-disc systems run by
    MetaMorph write it; no TIFF resolution tag is set there."""
    if not tif.is_metaseries:
        return None
    try:
        info = (tif.metaseries_metadata or {}).get("PlaneInfo") or {}
    except Exception:  # noqa: BLE001 - vendor XML tifffile could not parse: no pixel size
        return None
    factor = um_per_unit(info.get("spatial-calibration-units"))
    if not info.get("spatial-calibration-state") or factor is None:
        return None
    x = length_um(info.get("spatial-calibration-x"), factor)
    y = length_um(info.get("spatial-calibration-y", info.get("spatial-calibration-x")), factor)
    return (x, y) if x is not None and y is not None else None


def pixel_size(tif: tifffile.TiffFile) -> tuple[tuple[float, float], PixelSizeSource] | None:
    """The (X, Y) pixel size in µm and where it came from, or None if the file has none.

    In order: OME ``PhysicalSizeX/Y`` (with their units), the TIFF resolution in an ImageJ
    file's ``unit``, MetaMorph's spatial calibration (:func:`metaseries_pixel_size`), a bare
    TIFF resolution in cm, mm or µm of at most
    :data:`MAX_RESOLUTION_PIXEL_UM` per pixel. Unreadable or non-positive values are logged
    and ignored.

    Raises
    ------
    InputError
        If an OME unit is not a length.
    """
    ome = _ome_pixel_size(tif)
    if ome is not None:
        return ome, "ome"
    page = tif.pages.first
    if tif.is_imagej:
        factor = um_per_unit((tif.imagej_metadata or {}).get("unit"))
        if factor is not None and (size := _resolution_pixel_size(page, factor)) is not None:
            return size, "imagej"
    if (size := metaseries_pixel_size(tif)) is not None:
        return size, "metaseries"
    unit = {
        tifffile.RESUNIT.CENTIMETER: 1e4,
        tifffile.RESUNIT.MILLIMETER: 1e3,
        tifffile.RESUNIT.MICROMETER: 1.0,
    }.get(page.resolutionunit)
    if unit is not None and (size := _resolution_pixel_size(page, unit)) is not None:
        if max(size) <= MAX_RESOLUTION_PIXEL_UM:
            return size, "resolution"
        log.warning(
            "%s: ignoring TIFF resolution %.4g µm/pixel (a print DPI, not a pixel size)",
            tif.filehandle.path,
            size[0],
        )
    return None


def z_step(tif: tifffile.TiffFile) -> tuple[float, Literal["ome", "imagej"]] | None:
    """The Z spacing in µm from OME ``PhysicalSizeZ`` or ImageJ ``spacing``, if stated."""
    try:
        pixels = _tif_ome_pixels(tif)
    except ValueError:
        return None
    z = ome_z_step(pixels) if pixels is not None else None
    if z is not None:
        return z, "ome"
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        factor = um_per_unit(meta.get("unit"))
        spacing = meta.get("spacing")
        if factor is not None and isinstance(spacing, int | float) and spacing > 0:
            return float(spacing) * factor, "imagej"
    return None


# ------------------------------------------------------------------------------ axes


def normalise_axes(
    path: Path, axes: str, shape: tuple[int, ...], declared: str | None = None, *,
    samples_as_channels: bool = False,
) -> tuple[str, AxesSource, str | None]:
    """Map tifffile's axis codes onto chromarate's, or refuse the file.

    Returns the axes (one of :data:`READ_AXES`), their source and a note for the user. Axes
    the metadata do not name (tifffile's ``Q`` or ``I``) take ``declared`` (``--axes``) when
    given; a single such axis before ``YX`` is otherwise read as Z planes, and the note says
    so. Samples per pixel (tifffile's ``S``: a channels-last array saved by numpy/tifffile)
    are read as channels when ``samples_as_channels`` (the caller has refused 8-bit RGB).

    Raises
    ------
    InputError
        For samples per pixel when not ``samples_as_channels`` (or beside a C axis), axes
        that do not end in YX (or YXC), unnamed axes that cannot be guessed, a ``declared``
        of the wrong length, or a layout not in :data:`READ_AXES`.

    >>> normalise_axes(Path("x.tif"), "YXS", (64, 64, 3), samples_as_channels=True)[::2]
    ('YXC', 'its 3 samples per pixel are read as 3 channels (axes YXC)')
    >>> normalise_axes(Path("x.tif"), "QYX", (64, 64, 2), "YXC")[:2]
    ('YXC', '--axes')
    """
    note = None
    if "S" in axes:
        n = shape[axes.index("S")]
        if not samples_as_channels or "C" in axes:
            reason = "it is RGB/RGBA colour" if n in (3, 4) else f"it has {n} samples per pixel"
            raise InputError(path, reason, "Save one grey-level image per channel (axes CYX)")
        axes = axes.replace("S", "C")
        note = f"its {n} samples per pixel are read as {n} channels (axes {axes})"
    trail = "C" if axes.endswith("YXC") else ""
    core = axes[:-1] if trail else axes
    if core[-2:] != "YX":
        raise InputError(path, f"axes {axes!r} do not end in YX", AXES_HINT)
    lead, source = core[:-2], "metadata"
    if set(lead) & _UNNAMED:
        if declared is not None:
            if len(declared) != len(axes):
                raise InputError(path, f"--axes {declared} has {len(declared)} letters but "
                                 f"the file has {len(axes)} dimensions (shape {shape})",
                                 "Pass --axes with one letter per dimension, e.g. ZYX")
            trail = "C" if declared.endswith("YXC") else ""
            lead, source = declared[: -2 - len(trail)], "--axes"
        elif len(lead) == 1:
            lead, source = "Z", "default"
            note = (f"the file does not name its axes ({axes}): its {shape[0]} pages are read "
                    "as Z planes; pass --axes TYX for time points or --axes CYX for channels")
            if shape[-1] <= 4 < min(shape[:-1]):
                note += (f" (its pages are {shape[-1]} pixels wide: a channels-last array "
                         "saved page by page reads right with --axes YXC)")
        else:
            raise InputError(path, f"the file does not name its axes (unknown axis "
                             f"{axes[0]!r} in axes {axes!r}, shape {shape})",
                             "Pass --axes, e.g. --axes ZCYX or --axes TCYX. Re-save it as "
                             "OME-TIFF or ImageJ hyperstack to keep the axes in the file")
    elif declared is not None and declared != axes:
        log.info("%s: its metadata name axes %s; --axes %s applies only to files whose "
                 "metadata do not", path, axes, declared)
    unknown = sorted(set(lead) - set("CZT"))
    if unknown or lead + "YX" + trail not in READ_AXES:
        what = f"unknown axis {', '.join(map(repr, unknown))}" if unknown else "unsupported layout"
        raise InputError(path, f"{what} in axes {axes!r} (shape {shape})", AXES_HINT)
    return lead + "YX" + trail, source, note  # type: ignore[return-value]
