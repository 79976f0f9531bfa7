"""Layer data for napari, built from result stores and TIFFs without importing napari.

Every builder returns napari ``LayerData`` tuples ``(data, kwargs, layer_type)``, so the reader,
the sample data, the run widget and ``chromarate view`` share one description of how results
look: the raw and denoised images in grey, λ mean as a translucent overlay with a perceptual
colormap and robust contrast, λ std (hidden; its own colormap and contrast, opaque above λ
so that showing it replaces λ rather than mixing with it: the inspect widget's "show"
switches between the two), and the identifiable mask and nuclei as labels, all at the
physical scale of the image (micrometres).

Each layer carries ``metadata["chromarate"]``: ``role`` (``raw``, ``denoised``, ``fields``,
``lambda_mean``, ``lambda_std``, ``identifiable``, ``nuclei``, ``lambda_truth``), ``store``,
``stem``, ``pixel_size_um`` and ``plane_axis``, which the inspect widget uses to pair layers.

Examples
--------
>>> import numpy as np
>>> robust_limits(np.r_[np.arange(100.0), np.nan, 1e9], (1, 99))
(1.0, 99.0)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

# the report's percentile colour limits: one rule for the viewer and report.html
from pipeline.report.figures import robust_limits

__all__ = [
    "LAMBDA_COLORMAP",
    "LAMBDA_UNITS",
    "STD_COLORMAP",
    "LayerData",
    "find_stores",
    "is_result_store",
    "is_results_folder",
    "is_tiff_folder",
    "read_nuclei_table",
    "robust_limits",
    "store_layers",
    "tiff_layers",
]

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

LAMBDA_COLORMAP = "magma"
STD_COLORMAP = "viridis"
LAMBDA_UNITS = "λ = Γme/Γac (dimensionless)"
RAW_PERCENTILES = (0.5, 99.5)
LAMBDA_PERCENTILES = (1.0, 99.0)
LAMBDA_OPACITY = 0.7
_TIFF_SUFFIXES = (".tif", ".tiff")
_STORE_SUFFIX = ".ome.zarr"
_UM = "micrometer"
_NO_UNIT = "pixel"


def is_result_store(path: str | os.PathLike[str]) -> bool:
    """True for a chromarate ``<stem>.ome.zarr`` store (root attribute ``"chromarate"``, read by
    :func:`pipeline.io.omezarr.result_store_record`).

    Other OME-Zarr stores are left to other readers (napari-ome-zarr).
    """
    from pipeline.io.omezarr import result_store_record

    path = Path(path)
    return path.name.endswith(_STORE_SUFFIX) and result_store_record(path) is not None


def find_stores(folder: str | os.PathLike[str]) -> list[Path]:
    """The chromarate stores directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_result_store(p))


def is_results_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding chromarate stores (``OUT`` of ``chromarate run``)."""
    path = Path(path)
    return path.is_dir() and not is_result_store(path) and bool(find_stores(path))


def is_tiff_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding at least one ``.tif``/``.tiff`` file."""
    path = Path(path)
    return path.is_dir() and any(
        p.suffix.lower() in _TIFF_SUFFIXES and not p.name.startswith(".") for p in path.iterdir()
    )


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(_STORE_SUFFIX)] if name.endswith(_STORE_SUFFIX) else path.stem


def _contrast_level(levels: list[dict[str, Any]], min_side: int = 256) -> dict[str, Any]:
    """The smallest pyramid level still ≥ ``min_side`` px (level 0 if none is): enough pixels
    for robust percentiles without reading the full image."""
    best = levels[0]
    for level in levels[1:]:
        if min(level["raw"].shape[-2:]) >= min_side:
            best = level
    return best


def _split(levels: list[Any]) -> tuple[Any, bool]:
    """napari data: the array itself for one level, the list (multiscale) otherwise."""
    return (levels[0], False) if len(levels) == 1 else (list(levels), True)


def read_nuclei_table(folder: str | os.PathLike[str], stem: str) -> Any | None:
    """Rows of ``folder/summary_nuclei.csv`` for one image, as napari label ``features``.

    Returns a pandas DataFrame with an ``index`` column (the nucleus label), or None when
    the file, its rows for ``stem`` or a label column are missing.
    """
    path = Path(folder) / "summary_nuclei.csv"
    if not path.is_file():
        return None
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    id_col = next((c for c in ("nucleus_id", "label") if c in table.columns), None)
    if id_col is None:
        return None
    if "file" in table.columns:
        names = table["file"].astype(str).map(lambda s: _stem(Path(Path(s).name)).split(".")[0])
        table = table[names == stem]
    if table.empty:
        return None
    return table.assign(index=table[id_col].astype(int)).reset_index(drop=True)


def store_layers(
    path: str | os.PathLike[str], *, visible: bool = True, prefix: str | None = None
) -> list[LayerData]:
    """Layers of one result store, read through :func:`pipeline.io.open_result_store`.

    Parameters
    ----------
    path : path
        A ``<stem>.ome.zarr`` written by chromarate.
    visible : bool
        Whether the main layers (raw, λ mean, nuclei) start visible; others are hidden.
    prefix : str, optional
        Start of every layer name; the store's stem by default.

    Returns
    -------
    list of LayerData
        Raw channels (grey, additive), extra images (hidden), λ mean (translucent
        overlay), λ std (hidden, opaque), then labels, in that order (later is drawn on top).
    """
    from pipeline.io import open_result_store

    path = Path(path)
    first = open_result_store(path)
    levels = [first] + [open_result_store(path, level=k) for k in range(1, first["n_levels"])]
    smallest = _contrast_level(levels)
    stem = prefix or _stem(path)
    axes = first["axes"]
    plane_axis = axes[0] if len(axes) == 4 else None
    px = first["pixel_size_um"]
    p_scale = first["axis_scales"].get(plane_axis, 1.0) if plane_axis else 1.0
    p_unit = (first["axis_units"].get(plane_axis) if plane_axis else None) or _NO_UNIT
    scale = (p_scale, px, px) if plane_axis else (px, px)
    spatial = {
        "scale": scale,
        "units": (p_unit, _UM, _UM) if plane_axis else (_UM, _UM),
        "axis_labels": (plane_axis, "y", "x") if plane_axis else ("y", "x"),
    }

    def meta(role: str, **extra: Any) -> dict[str, Any]:
        record = {
            "role": role,
            "store": str(path),
            "stem": stem,
            "pixel_size_um": px,
            "plane_axis": plane_axis,
            "attrs": first["attrs"],
            **extra,
        }
        return {"chromarate": record}

    def channel(level: dict[str, Any], key: str, c: int, name: str | None = None) -> Any:
        arr = level[key] if name is None else level[key][name]
        if arr.ndim == len(scale):  # no channel axis
            return arr
        return arr[:, c] if plane_axis else arr[c]

    layers: list[LayerData] = []
    for c, cname in enumerate(first["channel_names"] or ["raw"]):
        data, multi = _split([channel(lv, "raw", c) for lv in levels])
        layers.append((data, {
            "name": f"{stem} raw {cname}",
            "colormap": "gray",
            "blending": "additive",
            "contrast_limits": robust_limits(channel(smallest, "raw", c), RAW_PERCENTILES),
            "multiscale": multi,
            "visible": visible,
            "metadata": meta("raw", channel=cname),
            **spatial,
        }, "image"))
    for name in first["images"]:
        names = first["channel_names_of"].get(name) or [name]
        for c, cname in enumerate(names):
            data, multi = _split([channel(lv, "images", c, name) for lv in levels])
            label = name if len(names) == 1 else f"{name} {cname}"
            layers.append((data, {
                "name": f"{stem} {label}",
                "colormap": "gray",
                "blending": "additive",
                "contrast_limits": robust_limits(
                    channel(smallest, "images", c, name), RAW_PERCENTILES
                ),
                "multiscale": multi,
                "visible": False,
                "metadata": meta(name, channel=cname),
                **spatial,
            }, "image"))
    if first["rates"] is not None:
        data, multi = _split([channel(lv, "rates", 0) for lv in levels])
        layers.append((data, {
            "name": f"{stem} λ mean",
            "colormap": LAMBDA_COLORMAP,
            "blending": "translucent",
            "opacity": LAMBDA_OPACITY,
            "contrast_limits": robust_limits(channel(smallest, "rates", 0), LAMBDA_PERCENTILES),
            "multiscale": multi,
            "visible": visible,
            "metadata": meta("lambda_mean", units=LAMBDA_UNITS),
            **spatial,
        }, "image"))
        std_small = np.asarray(channel(smallest, "rates", 1))
        has_std = bool(np.isfinite(std_small).any())
        data, multi = _split([channel(lv, "rates", 1) for lv in levels])
        layers.append((data, {  # above λ and opaque: shown, it replaces λ, never mixes
            "name": f"{stem} λ std",
            "colormap": STD_COLORMAP,
            "blending": "opaque",
            "contrast_limits": robust_limits(std_small, LAMBDA_PERCENTILES),
            "multiscale": multi,
            "visible": False,
            "metadata": meta("lambda_std", units=LAMBDA_UNITS, available=has_std),
            **spatial,
        }, "image"))
    for name in first["labels"]:
        data, multi = _split([lv["labels"][name] for lv in levels])
        kwargs: dict[str, Any] = {
            "name": f"{stem} {name}",
            "opacity": 0.4 if name == "nuclei" else 0.3,
            "multiscale": multi,
            "visible": False,  # the inspect widget shows nuclei as outlines
            "metadata": meta(name),
            **spatial,
        }
        if name == "nuclei":
            features = read_nuclei_table(path.parent, stem)
            if features is not None:
                kwargs["features"] = features
        layers.append((data, kwargs, "labels"))
    return layers


def tiff_layers(path: str | os.PathLike[str], *, visible: bool = True) -> list[LayerData]:
    """Raw view of one TIFF: one grey layer per channel at the file's pixel size.

    Raises :class:`pipeline.io.InputError` for a file chromarate does not understand.
    """
    from pipeline.io import inspect_tiff, read_planes

    path = Path(path)
    info = inspect_tiff(path)
    planes = read_planes(path, info)  # (P, C, Y, X)
    px = float(info.pixel_size_um)
    plane_axis = info.plane_axis.lower() if info.plane_axis else None
    stem = path.name.split(".")[0]
    scale = (1.0, px, px) if plane_axis else (px, px)
    units = (_NO_UNIT, _UM, _UM) if plane_axis else (_UM, _UM)
    labels = (plane_axis, "y", "x") if plane_axis else ("y", "x")
    layers: list[LayerData] = []
    for c in range(info.n_channels):
        data = planes[:, c] if plane_axis else planes[0, c]
        step = max(1, max(data.shape[-2:]) // 256)
        sample = data[..., ::step, ::step]
        layers.append((data, {
            "name": f"{stem} raw {c}" if info.n_channels > 1 else f"{stem} raw",
            "colormap": "gray",
            "blending": "additive",
            "contrast_limits": robust_limits(sample, RAW_PERCENTILES),
            "scale": scale,
            "units": units,
            "axis_labels": labels,
            "visible": visible,
            "metadata": {"chromarate": {
                "role": "raw", "source": str(path), "stem": stem, "pixel_size_um": px,
                "plane_axis": plane_axis, "channel": c,
            }},
        }, "image"))
    return layers
