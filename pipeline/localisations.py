"""Localisation tables (STORM, PALM, DNA-PAINT) rendered as images for ``chromarate run``
(``chromarate render``).

chromarate fits images. A single-molecule experiment ends in a table of localisations; this
module reads the tables that localisation software exports and renders them the way that
software does: the localisations are counted on the pixel grid and the counts are blurred by a
Gaussian of the localisation precision (its median over the table, or ``blur_um``). The
rendering holds localisations per pixel (float32, rounded to :data:`ROUND_LOCS`), keeps the
count (the Gaussian has unit sum), and starts at the camera's origin (0, 0), so renderings of
the two channels of one field, from one table or two, share their grid.

Tables read (columns matched without regard to case or quotes; the first matching format wins):

============== ===================== ========================= =============== ==============
format         x, y                  precision                 frame           channel
============== ===================== ========================= =============== ==============
ThunderSTORM   ``x [nm]``, ``y [nm]``  ``uncertainty_xy [nm]``,  ``frame``       —
                                     ``uncertainty [nm]``
Nikon N-STORM  ``Xc``, ``Yc`` (drift  ``Lateral Localization    ``Frame``       ``Channel
               corrected), else        Accuracy``                                Name``
               ``X``, ``Y`` (nm)
SMAP           ``xnm``, ``ynm``        ``locprecnm``             ``frame``       ``channel``
µm columns     ``x [µm]``, ``y [µm]``  ``uncertainty [µm]``      ``frame``       ``channel``
============== ===================== ========================= =============== ==============

Tab-, comma- or semicolon-separated text; lines starting with ``#`` are skipped. A 3D table
is projected (z is not read). Columns ``x``, ``y`` without a unit are refused: whether they
are nanometres or camera pixels cannot be told from the file.

>>> import pandas as pd
>>> table = LocalisationTable("t", "ThunderSTORM", pd.DataFrame(
...     {"x": [0.0501, 0.0501], "y": [0.0301, 0.0301], "precision": [0.01, 0.01],
...      "channel": ["t", "t"]}))
>>> image, names, rec = render([table], 0.02, blur_um=0.0)
>>> image.shape, names, float(image.sum()), float(image[0, 1, 2])
((1, 2, 3), ('t',), 2.0, 2.0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMATS", "MAX_RENDER_PX", "ROUND_LOCS", "LocalisationTable", "TableFormat",
           "read_localisations", "render"]

log = logging.getLogger(__name__)

ROUND_LOCS = 0.01
"""The rendering is rounded to this many localisations per pixel (a change to no count that
matters; it makes the TIFF compress). Float renderings used to defeat the noise model where a
blur of 1.5 px or more leaves almost no noise power in its band; its fit is now limited to the
spectrum's top three decades and reads both alike (docs/bandwidth.md, "The spectrum's
range")."""
MAX_RENDER_PX = 2**28
"""A rendering of more pixels than this (16384 x 16384, per channel) is refused: it would
need several GiB while counting and blurring, and at any pixel size chromarate was measured
at (0.01-0.06 µm) it covers a field of 160 µm or more, so it is usually a sign that the pixel
size or the coordinates' unit is not what was meant."""


@dataclass(frozen=True)
class TableFormat:
    """A localisation table's columns (lower case, candidates in order of preference) and
    their unit. ``signature``: a column only this format has (for formats whose x and y
    columns are plain ``x``, ``y``)."""

    name: str
    x: tuple[str, ...]
    y: tuple[str, ...]
    um_per_unit: float
    precision: tuple[str, ...] = ()
    frame: tuple[str, ...] = ("frame",)
    channel: tuple[str, ...] = ()
    signature: str | None = None


FORMATS: tuple[TableFormat, ...] = (
    TableFormat("ThunderSTORM", ("x [nm]",), ("y [nm]",), 1e-3,
                ("uncertainty_xy [nm]", "uncertainty [nm]"), channel=("channel",)),
    TableFormat("Nikon N-STORM", ("xc", "x"), ("yc", "y"), 1e-3,
                ("lateral localization accuracy",), channel=("channel name",),
                signature="lateral localization accuracy"),
    TableFormat("SMAP", ("xnm",), ("ynm",), 1e-3, ("locprecnm",), channel=("channel",)),
    TableFormat("µm columns", ("x [µm]", "x [um]"), ("y [µm]", "y [um]"), 1.0,
                ("uncertainty [µm]", "uncertainty [um]"), channel=("channel",)),
)


@dataclass(frozen=True)
class LocalisationTable:
    """One table's localisations: ``data`` with columns ``x``, ``y`` (µm), ``precision`` (µm,
    NaN where the table has none), ``channel`` (str: the table's channel column, else
    ``name``), and ``frame`` when the table has one."""

    name: str
    format: str
    data: Any  # pandas.DataFrame


def _columns(path: Path) -> tuple[list[str], str]:
    """The header's column names and the separator, from the first line not starting with #."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                sep = max(("\t", ",", ";"), key=line.count)
                return [_clean(c) for c in line.rstrip("\r\n").split(sep)], sep
    raise ValueError(f"{path}: no header line (the file is empty or all comments)")


def _clean(name: str) -> str:
    """A column's name without the quotes and spaces around it."""
    return name.strip().strip('"').strip("'").strip()


def _pick(lower: dict[str, str], candidates: Sequence[str]) -> str | None:
    return next((lower[c] for c in candidates if c in lower), None)


def read_localisations(path: str | Path) -> LocalisationTable:
    """The localisations of one exported table (see the module's table of formats).

    Raises ``ValueError`` naming the file: no format matches its columns (the columns found
    are listed), a coordinate is not a finite number, or the table is empty.
    """
    import pandas as pd

    path = Path(path)
    names, sep = _columns(path)
    lower = {n.lower(): n for n in names}
    for fmt in FORMATS:
        x, y = _pick(lower, fmt.x), _pick(lower, fmt.y)
        if x is None or y is None or (fmt.signature and fmt.signature not in lower):
            continue
        prec, frame, chan = (_pick(lower, fmt.precision), _pick(lower, fmt.frame),
                             _pick(lower, fmt.channel))
        use = frozenset(c for c in (x, y, prec, frame, chan) if c is not None)
        try:
            raw = pd.read_csv(path, sep=sep, comment="#", skipinitialspace=True,
                              usecols=lambda c, use=use: _clean(c) in use)
        except (ValueError, pd.errors.ParserError) as exc:
            raise ValueError(f"{path}: read as a {fmt.name} table, it does not parse ({exc})"
                             ) from exc
        raw.columns = [_clean(c) for c in raw.columns]
        data = pd.DataFrame({
            "x": pd.to_numeric(raw[x], errors="coerce") * fmt.um_per_unit,
            "y": pd.to_numeric(raw[y], errors="coerce") * fmt.um_per_unit})
        bad = int((~np.isfinite(data["x"]) | ~np.isfinite(data["y"])).sum())
        if bad:
            raise ValueError(f"{path}: {bad} localisation(s) whose {x} or {y} is not a number")
        if data.empty:
            raise ValueError(f"{path}: the table holds no localisations")
        data["precision"] = (pd.to_numeric(raw[prec], errors="coerce") * fmt.um_per_unit
                             if prec else np.nan)
        data["channel"] = raw[chan].astype(str).str.strip() if chan else path.stem
        if frame:
            data["frame"] = pd.to_numeric(raw[frame], errors="coerce")
        return LocalisationTable(path.stem, fmt.name, data)
    plain = {"x", "y"} <= set(lower)
    raise ValueError(
        f"{path}: not a localisation table chromarate reads (columns: {', '.join(names[:12])}"
        f"{', ...' if len(names) > 12 else ''}). "
        + ("Its x and y columns carry no unit (nanometres? camera pixels?): name them "
           "'x [nm]' and 'y [nm]' (or 'x [µm]', 'y [µm]'), with the precision as "
           "'uncertainty [nm]'" if plain else
           "Export it from ThunderSTORM, SMAP or NIS-Elements, or name its columns "
           "'x [nm]', 'y [nm]' and 'uncertainty [nm]'"))


def render(tables: Sequence[LocalisationTable], pixel_size_um: float, *,
           blur_um: float | None = None, grid: tuple[tuple[int, int], tuple[int, int]] | None
           = None) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
    """The ``(C, Y, X)`` float32 rendering of ``tables`` (localisations per pixel), its
    channels' names and a record.

    Channels: per table in the order given, its channel column's values (sorted, e.g. "561",
    "647"), or the table itself. The grid starts at the origin (0, 0) of the coordinates
    (localisations at negative coordinates, after a drift correction, extend it) and ends at
    the largest coordinate of any table. ``blur_um``: the Gaussian's standard deviation;
    default the median precision of all the localisations (``ValueError`` when no table
    states one); 0 counts without a blur. ``grid``: ``((oy, ox), (ny, nx))``, the first
    pixel's index and the shape, to render on another rendering's grid (``record["grid"]``;
    localisations off it are dropped).
    """
    from scipy.ndimage import gaussian_filter

    if not pixel_size_um > 0:
        raise ValueError(f"the pixel size must be positive, got {pixel_size_um}")
    groups = []
    for t in tables:
        for name in sorted(t.data["channel"].unique(), key=_channel_key):
            groups.append((t, name, t.data[t.data["channel"] == name]))
    precision = np.concatenate([np.asarray(g["precision"], float) for _, _, g in groups])
    precision = precision[np.isfinite(precision) & (precision > 0)]
    blur_source = "--blur-nm" if blur_um is not None else "the median precision"
    if blur_um is None:
        if not precision.size:
            raise ValueError(f"{', '.join(t.name for t in tables)}: no localisation precision "
                             "in the table(s); pass --blur-nm (the rendering Gaussian's width, "
                             "e.g. the precision you expect)")
        blur_um = float(np.median(precision))
    if grid is None:
        x0 = min(0.0, min(float(g["x"].min()) for _, _, g in groups))
        y0 = min(0.0, min(float(g["y"].min()) for _, _, g in groups))
        ox, oy = math.floor(x0 / pixel_size_um), math.floor(y0 / pixel_size_um)
        nx = math.floor(max(float(g["x"].max()) for _, _, g in groups) / pixel_size_um) - ox + 1
        ny = math.floor(max(float(g["y"].max()) for _, _, g in groups) / pixel_size_um) - oy + 1
    else:
        (oy, ox), (ny, nx) = grid
    if nx * ny > MAX_RENDER_PX:
        raise ValueError(
            f"{', '.join(t.name for t in tables)}: a rendering of {ny} x {nx} pixels at "
            f"{pixel_size_um:g} µm (the coordinates reach {ny * pixel_size_um:.4g} x "
            f"{nx * pixel_size_um:.4g} µm); check the pixel size and that the table's "
            "coordinates are in the unit its columns say")
    image = np.empty((len(groups), ny, nx), np.float32)
    channels = []
    for k, (t, name, g) in enumerate(groups):
        ix = np.floor(np.asarray(g["x"], float) / pixel_size_um).astype(np.int64) - ox
        iy = np.floor(np.asarray(g["y"], float) / pixel_size_um).astype(np.int64) - oy
        on = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        counts = np.bincount(iy[on] * nx + ix[on], minlength=ny * nx).reshape(ny, nx)
        blurred = (gaussian_filter(counts.astype(np.float64), blur_um / pixel_size_um,
                                   mode="constant") if blur_um > 0 else counts)
        image[k] = np.rint(blurred / ROUND_LOCS) * ROUND_LOCS
        p = np.asarray(g["precision"], float)
        p = p[np.isfinite(p) & (p > 0)]
        channels.append({"name": str(name), "table": t.name, "format": t.format,
                         "localisations": int(len(g)),
                         "precision_median_nm": round(1e3 * float(np.median(p)), 2)
                         if p.size else None,
                         "frames": int(g["frame"].nunique()) if "frame" in g else None})
        log.info("render: %s channel %s: %d localisations", t.name, name, len(g))
    record = {"pixel_size_um": pixel_size_um, "blur_nm": round(1e3 * blur_um, 3),
              "blur_source": blur_source,
              "origin_um": [oy * pixel_size_um, ox * pixel_size_um], "shape": [ny, nx],
              "grid": [[oy, ox], [ny, nx]],
              "channels": channels}
    return image, tuple(c["name"] for c in channels), record


def _channel_key(name: Any) -> tuple[int, float, str]:
    """Channel names in numeric order when they are numbers (laser lines: 561 before 647)."""
    try:
        return (0, float(name), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(name))
