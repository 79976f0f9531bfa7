"""Which λ pixels to trust, and summaries of them per nucleus or over a drawn selection: the
inspect widget's glue.

The numbers come from :func:`pipeline.summary.object_stats`, the function that makes the
run's ``summary_nuclei.csv``: same columns, same definitions (``lambda_sd`` with
``ddof`` 1), over the pixels shown instead of the identifiable ones. Plain numpy and pandas,
no napari, so each function is tested without a viewer.

Examples
--------
>>> import numpy as np
>>> lam = np.array([[1.0, 2.0], [np.nan, 4.0]])
>>> std = np.array([[0.1, 0.5], [0.1, 0.1]])
>>> visible_mask(lam, std, std_max=0.2).tolist()
[[True, False], [False, True]]
>>> rows = label_summaries(lam, None, visible_mask(lam), pixel_size_um=0.5)
>>> rows[0]["label"], rows[0]["area_um2"], rows[0]["lambda_mean"]
(0, 1.0, 2.3333333333333335)
>>> region = polygon_mask([[(-0.5, -0.5), (-0.5, 1.5), (0.5, 1.5), (0.5, -0.5)]], lam.shape)
>>> row = region_summary(lam, region, visible_mask(lam), pixel_size_um=0.5)
>>> row["region"], row["n_pixels"], row["lambda_mean"]
('selection', 2, 1.5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.summary import OBJECT_STATS, object_stats

__all__ = [
    "SUMMARY_COLUMNS",
    "format_summary",
    "label_summaries",
    "polygon_mask",
    "region_summary",
    "shape_polygon",
    "visible_mask",
    "write_summaries_csv",
]

SUMMARY_COLUMNS = ("file", "plane", "region", "label", "selection") + tuple(
    "fraction_visible" if c == "fraction_counted" else c for c in OBJECT_STATS[1:])
"""Columns of the export: provenance, ``region`` (``nucleus``, ``field`` or ``selection``),
``label`` (the nucleus; 0 for the whole field), ``selection`` (the shapes), then
:data:`pipeline.summary.OBJECT_STATS` with ``fraction_counted`` named ``fraction_visible``
(the share of the region's pixels shown)."""


def visible_mask(
    lam: Any,
    std: Any | None = None,
    identifiable: Any | None = None,
    *,
    std_max: float | None = None,
    require_identifiable: bool = True,
) -> np.ndarray:
    """Pixels whose λ is shown at full strength.

    Parameters
    ----------
    lam : array_like
        λ mean (NaN where the estimator gave none).
    std : array_like, optional
        λ std, same shape. A NaN std (no uncertainty computed) never hides a pixel.
    identifiable : array_like, optional
        Identifiability mask (non-zero where λ can be identified).
    std_max : float, optional
        Hide pixels with ``std > std_max``; None disables the threshold.
    require_identifiable : bool
        Hide pixels where ``identifiable == 0``.

    Returns
    -------
    array of bool
        numpy for numpy input; a lazy dask array for dask input.
    """
    keep = np.isfinite(_array(lam))
    if std is not None and std_max is not None:
        keep = keep & ~(_array(std) > std_max)  # NaN std compares False: kept
    if identifiable is not None and require_identifiable:
        keep = keep & (_array(identifiable) != 0)
    return keep


def _array(x: Any) -> Any:
    """numpy and dask arrays as they are (dask stays lazy); anything else through numpy."""
    return x if hasattr(x, "__array_function__") else np.asarray(x)


def label_summaries(
    lam: Any,
    labels: Any | None,
    visible: Any,
    *,
    pixel_size_um: float,
    std: Any | None = None,
    identifiable: Any | None = None,
    file: str = "",
    plane: int = 0,
) -> list[dict[str, Any]]:
    """One tidy row per nucleus (label > 0), or one row (``label`` 0) for the whole field.

    Parameters
    ----------
    lam : array_like, shape (Y, X)
        λ mean of one plane.
    labels : array_like of int, shape (Y, X), optional
        Nuclei; without them the whole field is one region.
    visible : array_like of bool
        From :func:`visible_mask`; statistics of λ use only these pixels.
    pixel_size_um : float
        For ``area_um2`` (the nucleus area, all its pixels) and the centroids.
    std : array_like, optional
        λ std; ``lambda_std_mean`` is its mean over the visible pixels.
    identifiable : array_like, optional
        Identifiability mask; ``fraction_identifiable`` is its share of the region (NaN
        without it).
    file, plane : str, int
        Provenance columns.

    Returns
    -------
    list of dict
        Keys :data:`SUMMARY_COLUMNS` (``region`` is ``"nucleus"`` or ``"field"``,
        ``selection`` None), and ``nucleus_id``, the same as ``label`` (kept for callers
        that look rows up by it; not exported); NaN statistics where no pixel is visible.
    """
    field = labels is None
    regions = np.ones(np.shape(lam), np.uint8) if field else labels
    rows = _rows(regions, lam, visible, std, identifiable, pixel_size_um, None)
    for row in rows:
        row |= {"file": file, "plane": int(plane), "region": "field" if field else "nucleus",
                "selection": None}
        row["label"] = row["nucleus_id"] = 0 if field else int(row["label"])
    return rows


def region_summary(
    lam: Any,
    region: Any,
    visible: Any,
    *,
    pixel_size_um: float,
    std: Any | None = None,
    identifiable: Any | None = None,
    file: str = "",
    plane: int = 0,
    selection: str = "all",
) -> dict[str, Any]:
    """One tidy row for a drawn region (``region == "selection"``), as :func:`label_summaries`
    computes for a nucleus.

    Parameters
    ----------
    region : array_like of bool, shape (Y, X)
        The region's pixels, e.g. from :func:`polygon_mask`.
    selection : str
        Which shapes make the region (``"1,3"``: the first and third), for the ``selection``
        column.

    Other parameters are those of :func:`label_summaries`.
    """
    (row,) = _rows(region, lam, visible, std, identifiable, pixel_size_um, [1])
    return row | {"file": file, "plane": int(plane), "region": "selection", "label": None,
                  "nucleus_id": None, "selection": selection}


def _rows(labels: Any, lam: Any, visible: Any, std: Any | None, identifiable: Any | None,
          pixel_size_um: float, index: list[int] | None) -> list[dict[str, Any]]:
    """:func:`pipeline.summary.object_stats` over the visible pixels, as row dicts."""
    table = object_stats(labels, lam, pixel_size_um=pixel_size_um, std=std, counted=visible,
                         identifiable=identifiable, index=index)
    table = table.rename(columns={"fraction_counted": "fraction_visible"})
    return [{k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
            for row in table.to_dict("records")]


def shape_polygon(vertices: Any, shape_type: str, n_points: int = 64) -> np.ndarray | None:
    """The outline of one napari shape as an (N, 2) polygon in (row, column); None for a
    shape without area (``line``, ``path``).

    Rectangles and polygons are their vertices; an ellipse (napari stores the four corners of
    its bounding box) is sampled at ``n_points`` points. Only the last two coordinates count,
    so shapes drawn on a plane of a stack work too.

    >>> shape_polygon([[0, 0], [0, 2], [2, 2], [2, 0]], "ellipse", 4).round(3).tolist()
    [[1.0, 2.0], [2.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    """
    v = np.asarray(vertices, dtype=np.float64)[:, -2:]
    if shape_type in ("rectangle", "polygon"):
        return v
    if shape_type == "ellipse":
        t = np.linspace(0, 2 * np.pi, n_points, endpoint=False)[:, None]
        return v.mean(0) + np.cos(t) * (v[1] - v[0]) / 2 + np.sin(t) * (v[2] - v[1]) / 2
    return None


def polygon_mask(polygons: Sequence[Any], shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``shape`` grid whose centres lie inside any of ``polygons``.

    Polygons are (N, 2) in (row, column) pixel units, pixel ``(i, j)`` centred on ``(i, j)``
    (napari's data coordinates of the λ layer's full-resolution level).

    >>> polygon_mask([[(0.5, 0.5), (0.5, 2.5), (2.5, 2.5), (2.5, 0.5)]], (4, 4)).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    from skimage.draw import polygon

    mask = np.zeros(shape, dtype=bool)
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        rr, cc = polygon(poly[:, 0], poly[:, 1], shape)
        mask[rr, cc] = True
    return mask


def format_summary(row: Mapping[str, Any] | None) -> str:
    """Human-readable lines for one summary row (the widget's readout).

    >>> print(format_summary({"region": "nucleus", "label": 2, "plane": 0,
    ...     "area_um2": 1.5, "n_pixels": 10, "fraction_identifiable": float("nan"),
    ...     "fraction_visible": 0.9, "lambda_mean": 1.2, "lambda_median": 1.1,
    ...     "lambda_sd": 0.3, "lambda_std_mean": float("nan")}))
    nucleus 2 (plane 0): 1.500 µm², 10 px, 90% shown
    λ mean 1.200, median 1.100, sd 0.300; uncertainty n/a
    """
    if row is None:
        return "no nucleus here"
    region = row.get("region")
    if region == "selection":
        what = f"selection {row['selection']}"
    else:
        what = "whole field" if row["label"] == 0 else f"nucleus {row['label']}"

    def num(v: float) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.3f}"

    ident = row.get("fraction_identifiable", float("nan"))
    ident = "" if not np.isfinite(ident) else f", {100 * ident:.0f}% identifiable"
    shown = row["fraction_visible"]
    shown = "none shown" if not np.isfinite(shown) else f"{100 * shown:.0f}% shown"
    return (
        f"{what} (plane {row['plane']}): {row['area_um2']:.3f} µm², {row['n_pixels']} px, "
        f"{shown}{ident}\n"
        f"λ mean {num(row['lambda_mean'])}, median {num(row['lambda_median'])}, "
        f"sd {num(row['lambda_sd'])}; uncertainty {num(row['lambda_std_mean'])}"
    )


def write_summaries_csv(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write summary rows as a tidy CSV (atomically), with provenance columns added.

    Parameters
    ----------
    rows : sequence of mapping
        From :func:`label_summaries`.
    path : path
        The CSV to write (parent folders are created).
    provenance : mapping, optional
        Constant columns added to every row (source, method, calibration, thresholds).

    Returns
    -------
    Path
    """
    import pandas as pd

    from pipeline.compare import FLOAT_FORMAT
    from pipeline.io import atomic_write_text

    table = pd.DataFrame(list(rows), columns=list(SUMMARY_COLUMNS))
    for key, value in (provenance or {}).items():
        table[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, table.to_csv(index=False, float_format=FLOAT_FORMAT))
