"""Lengths and OME-XML: unit names to micrometres, and what one OME ``Pixels`` element says
(pixel size, Z step, channel names).

The XML is parsed by :func:`tifffile.xml2dict`; lengths are converted with
:data:`UM_PER_UNIT` (pm, Å, nm, µm, mm, cm, m and their spelled-out names). Used by
:mod:`pipeline.io.metadata` (which re-exports these names) and :mod:`pipeline.split_series`.

Examples
--------
>>> um_per_unit("nm"), um_per_unit("Å"), um_per_unit("\\\\u00B5m"), um_per_unit("parsec")
(0.001, 0.0001, 1.0, None)
>>> ome_pixels('<OME><Image><Pixels PhysicalSizeX="65" PhysicalSizeXUnit="nm"/></Image></OME>')
{'PhysicalSizeX': 65, 'PhysicalSizeXUnit': 'nm'}
"""

from __future__ import annotations

import logging
import math
from typing import Any

import tifffile

from pipeline.errors import InputError

__all__ = [
    "UM_PER_UNIT",
    "length_um",
    "ome_channel_names",
    "ome_images_pixels",
    "ome_pixels",
    "ome_pixels_size",
    "ome_z_step",
    "um_per_unit",
]

log = logging.getLogger(__name__)

UM_PER_UNIT = {
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "angstrom": 1e-4, "ångström": 1e-4,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6,
}  # fmt: skip
"""Micrometres per length unit, keyed in lower case (µ as U+00B5, Å as U+00E5)."""


def um_per_unit(unit: Any) -> float | None:
    """Micrometres per ``unit`` (a length's name or symbol, any case), None if not a length.

    Accepts µ as U+00B5, U+03BC or the escaped text ``\\u00B5`` that some writers store,
    and Å as U+00C5 or U+212B.
    """
    if not isinstance(unit, str):
        return None
    key = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("\u03bc", "µ")
    return UM_PER_UNIT.get(key.lower().replace("\u212b", "å"))


def length_um(value: Any, factor: float) -> float | None:
    """``value`` (as tifffile parsed it) times ``factor``, or None unless positive and finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None  # "true" parsed as a bool: not a length
    try:
        size = float(value) * factor
    except ValueError:
        return None
    return size if math.isfinite(size) and size > 0 else None


def ome_pixels(xml: str) -> dict[str, Any] | None:
    """The attributes of the first ``Pixels`` element of OME-XML, None without one.

    The XML is parsed by :func:`tifffile.xml2dict`: values come back as numbers (or bools)
    where they read as such, as text otherwise. Raises :class:`ValueError` for XML that cannot
    be parsed.
    """
    try:
        tree = tifffile.xml2dict(xml, sep="")  # sep="": "1,5" stays text, not a tuple
    except Exception as exc:  # ParseError (a SyntaxError), RecursionError, ...
        raise ValueError(f"unreadable OME-XML ({type(exc).__name__}: {exc})") from exc
    pixels = _first(tree, "Pixels")
    if pixels is _MISSING:
        return None
    return pixels if isinstance(pixels, dict) else {}  # <Pixels/>: no attributes


_MISSING = object()


def _first(node: Any, key: str) -> Any:
    """The value of the first ``key`` in ``node`` (nested dicts and lists), depth first."""
    if isinstance(node, list):
        for item in node:
            if (found := _first(item, key)) is not _MISSING:
                return found
    elif isinstance(node, dict):
        for k, v in node.items():
            found = (v[0] if isinstance(v, list) else v) if k == key else _first(v, key)
            if found is not _MISSING:
                return found
    return _MISSING


def ome_pixels_size(pixels: dict[str, Any] | None, path: Any) -> tuple[float, float] | None:
    """The (X, Y) size in µm that one OME ``Pixels`` element's attributes give, None without
    ``PhysicalSizeX`` (or with a value that is not a positive length, which is logged).

    Raises
    ------
    InputError
        If a unit is not a length.
    """
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    sizes = []
    for ax in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{ax}", pixels.get("PhysicalSizeX"))
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")  # the OME schema's default
        factor = um_per_unit(unit)
        if factor is None:
            raise InputError(
                path, f"OME PhysicalSize{ax}Unit {str(unit)!r} is not a length"
            )
        size = length_um(value, factor)
        if size is None:
            log.warning("%s: ignoring OME PhysicalSize%s=%r", path, ax, str(value))
            return None
        sizes.append(size)
    return sizes[0], sizes[1]


def ome_channel_names(pixels: dict[str, Any]) -> tuple[Any, ...]:
    """The ``Name`` of each ``Channel`` of one OME ``Pixels`` element (None where unnamed).
    A name that tifffile parsed as a number (a laser line, ``Name="647"``) is given back as
    the text it was.

    >>> ome_channel_names({"Channel": [{"Name": 561}, {"Name": "H3K9me3"}, {}]})
    ('561', 'H3K9me3', None)
    """
    chans = pixels.get("Channel")
    chans = chans if isinstance(chans, list) else [chans] if isinstance(chans, dict) else []
    return tuple(_name_text(c.get("Name")) for c in chans if isinstance(c, dict))


def _name_text(name: Any) -> Any:
    return str(name) if isinstance(name, int | float) and not isinstance(name, bool) else name


def ome_images_pixels(xml: str) -> list[dict[str, Any]]:
    """The ``Pixels`` attributes of every OME ``Image``, in order (tifffile's series order).
    Raises :class:`ValueError` for XML that cannot be parsed."""
    try:
        tree = tifffile.xml2dict(xml, sep="")
    except Exception as exc:
        raise ValueError(f"unreadable OME-XML ({type(exc).__name__}: {exc})") from exc
    ome = tree.get("OME", {}) if isinstance(tree, dict) else {}
    images = ome.get("Image", []) if isinstance(ome, dict) else []
    images = images if isinstance(images, list) else [images]
    out = []
    for im in images:
        px = im.get("Pixels") if isinstance(im, dict) else None
        out.append(px if isinstance(px, dict) else {})
    return out


def ome_z_step(pixels: dict[str, Any]) -> float | None:
    """The Z spacing in µm that one OME ``Pixels`` element's ``PhysicalSizeZ`` gives, None
    without one (or with a unit that is not a length, or a value that is not positive)."""
    factor = um_per_unit(pixels.get("PhysicalSizeZUnit", "µm"))
    if pixels.get("PhysicalSizeZ") is None or factor is None:
        return None
    return length_um(pixels["PhysicalSizeZ"], factor)
