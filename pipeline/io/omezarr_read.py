"""Results back in: the stores :mod:`pipeline.io.omezarr` writes, read lazily.

:func:`open_result_store` gives every image of a store as dask arrays with its axes, scales
and channel names; :func:`result_store_record` reads only the run's ``"chromarate"`` record
(no array opened), which is how a results folder tells its stores from other folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import zarr

__all__ = ["open_result_store", "result_store_record"]


def _multiscale(group: zarr.Group) -> dict[str, Any]:
    return dict(group.attrs["ome"])["multiscales"][0]


def _axes_of(group: zarr.Group) -> str:
    return "".join(ax["name"] for ax in _multiscale(group)["axes"])


def _level_array(group: zarr.Group, level: int) -> da.Array:
    """One pyramid level, lazily, in the layout the writer took ((Z, C, Y, X) for z stacks)."""
    datasets = _multiscale(group)["datasets"]
    if not -len(datasets) <= level < len(datasets):
        raise ValueError(f"level {level} not in a {len(datasets)}-level pyramid")
    arr = group[datasets[level]["path"]]
    data = da.from_zarr(arr, chunks=arr.chunks)
    return data.transpose(1, 0, 2, 3) if _axes_of(group) == "czyx" else data


def _channel_names(group: zarr.Group) -> list[str]:
    return [
        ch.get("label", "") for ch in dict(group.attrs["ome"]).get("omero", {}).get("channels", [])
    ]


def result_store_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``"chromarate"`` record of a store written by :func:`write_result_store`, read from
    its root metadata only (no array is opened); None when ``path`` is not such a store (not a
    folder, not a Zarr v3 group, unreadable metadata, or a group without that attribute).

    >>> import tempfile
    >>> result_store_record(tempfile.mkdtemp()) is None
    True
    """
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        root = zarr.open_group(path, mode="r", zarr_format=3)
        record = root.attrs.get("chromarate")
    except (OSError, ValueError, TypeError, KeyError):  # zarr's errors are ValueErrors
        return None
    return dict(record) if isinstance(record, Mapping) else None


def open_result_store(path: str | os.PathLike[str], *, level: int = 0) -> dict[str, Any]:
    """Read a store written by :func:`write_result_store` back as lazy dask arrays.

    Parameters
    ----------
    path : path
        The ``.ome.zarr`` store.
    level : int
        Pyramid level to return (0 is full resolution).

    Returns
    -------
    dict
        ``raw``, ``rates`` (or None), ``images`` (name -> array), ``labels`` (name ->
        array), ``axes`` (of raw), ``pixel_size_um``, ``axis_scales`` and ``axis_units`` (axis
        name -> full-resolution scale, and unit or None, e.g. ``{"z": 0.1, ...}`` and
        ``{"z": "micrometer", ...}``), ``channel_names``, ``channel_names_of`` (image name ->
        names), ``n_levels`` and ``attrs`` (the ``"chromarate"`` record).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such result store")
    root = zarr.open_group(path, mode="r", zarr_format=3)
    ms = _multiscale(root)
    axes = _axes_of(root)
    scale = next(
        t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale"
    )
    out: dict[str, Any] = {
        "path": path,
        "raw": _level_array(root, level),
        "axes": "zcyx" if axes == "czyx" else axes,
        "pixel_size_um": float(scale[axes.index("x")]),
        "axis_scales": {ax["name"]: float(v) for ax, v in zip(ms["axes"], scale, strict=True)},
        "axis_units": {ax["name"]: ax.get("unit") for ax in ms["axes"]},
        "channel_names": _channel_names(root),
        "n_levels": len(ms["datasets"]),
        "rates": None,
        "images": {},
        "labels": {},
        "channel_names_of": {},
        "attrs": dict(root.attrs.get("chromarate", {})),
    }
    for name, group in sorted(root.groups()):
        if name == "labels":
            for label_name in dict(group.attrs.get("ome", {})).get("labels", []):
                out["labels"][label_name] = _level_array(group[label_name], level)
        elif "multiscales" in dict(group.attrs.get("ome", {})):
            out["images"][name] = _level_array(group, level)
            out["channel_names_of"][name] = _channel_names(group)
    out["rates"] = out["images"].pop("rates", None)
    return out
