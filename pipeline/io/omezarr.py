"""Results out: one OME-Zarr 0.5 (Zarr v3) store per input image, written atomically.

Layout of ``<stem>.ome.zarr``::

    /                 raw image, axes cyx (or zcyx / tcyx), multiscale
    /rates            λ mean (c=0) and λ std (c=1), float32, same scale
    /<name>           extra continuous images (e.g. denoised, fields)
    /labels/<name>    integer masks (identifiable pixels, nuclei, domains)

Every image is a pyramid (2× per level by local mean, nearest for labels) with exactly one
``scale`` per level, y/x in micrometres, ``dimension_names`` on every array, and zarr chunks
equal to dask chunks (≤ 1024 in y and x). Root attribute ``"chromarate"`` holds the run's
JSON-able record. Reading a store back: :mod:`pipeline.io.omezarr_read` (its names are
re-exported here).

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> store = Path(tempfile.mkdtemp()) / "cell.ome.zarr"
>>> raw = np.zeros((2, 64, 64), np.uint16)
>>> _ = write_result_store(store, raw=raw, pixel_size_um=0.02,
...                        channel_names=["chromatin", "heterochromatin"])
>>> res = open_result_store(store)
>>> res["axes"], res["pixel_size_um"], res["channel_names"]
('cyx', 0.02, ['chromatin', 'heterochromatin'])
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import zarr
from ome_zarr.scale import Methods
from ome_zarr.writer import write_image, write_labels

from pipeline.io.atomic import atomic_dir
from pipeline.io.omezarr_read import _axes_of, open_result_store, result_store_record

__all__ = ["RATE_CHANNELS", "n_pyramid_levels", "open_result_store", "result_store_record",
           "write_result_store"]

log = logging.getLogger(__name__)

RATE_CHANNELS = ("lambda_mean", "lambda_std")
_MAX_CHUNK_YX = 1024
_MAX_LEVELS = 4
_MIN_SIDE_TO_DOWNSAMPLE = 64
_COLORS = ("00FFFF", "FF00FF", "FFFF00", "00FF00", "FF0000", "0000FF")
_INT_LABEL_KINDS = "iu"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_LEVEL = re.compile(r"s\d+")

ImageInput = Any  # a numpy or dask array, or (array, channel names)


def n_pyramid_levels(shape_yx: Sequence[int]) -> int:
    """Levels of the pyramid: full resolution, then 2× steps while the shorter side is ≥ 64.

    At most 4 levels.

    Examples
    --------
    >>> n_pyramid_levels((63, 500)), n_pyramid_levels((64, 64)), n_pyramid_levels((4096, 4096))
    (1, 2, 4)
    """
    side, levels = min(shape_yx), 1
    while levels < _MAX_LEVELS and side >= _MIN_SIDE_TO_DOWNSAMPLE:
        side //= 2
        levels += 1
    return levels


def _as_dask(array: Any) -> da.Array:
    """A dask array with one chunk per non-spatial index and ≤ 1024² in y/x (regular)."""
    arr = array if isinstance(array, da.Array) else da.from_array(np.asarray(array))
    chunks = (1,) * (arr.ndim - 2) + tuple(min(n, _MAX_CHUNK_YX) for n in arr.shape[-2:])
    return arr.rechunk(chunks)


def _check_name(name: str) -> str:
    """A group name that cannot collide with pyramid arrays or ``labels``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or _LEVEL.fullmatch(name):
        raise ValueError(f"{name!r} is not a usable image name (letters, digits, _ or -)")
    if name in ("rates", "labels"):
        raise ValueError(f"image name {name!r} is reserved")
    return name


def _json_safe(value: Any, where: str = "attrs") -> Any:
    """Plain JSON types; non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where} = {value!r} ({type(value).__name__}) cannot be stored as JSON")


def _omero(group: zarr.Group, names: Sequence[str], n_levels: int) -> None:
    """Add channel names and display windows, measured on the smallest pyramid level."""
    small = np.asarray(group[f"s{n_levels - 1}"][...], dtype=np.float64)
    axes = _axes_of(group)
    channels = []
    for i, name in enumerate(names):
        plane = np.take(small, i, axis=axes.index("c")) if "c" in axes else small
        finite = plane[np.isfinite(plane)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        color = "FFFFFF" if len(names) == 1 else _COLORS[i % len(_COLORS)]
        channels.append(
            {
                "label": str(name),
                "active": True,
                "color": color,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
        )
    ome = dict(group.attrs["ome"])
    ome["omero"] = {"channels": channels}
    group.attrs["ome"] = ome


class _Layout:
    """Axes, scale and units shared by every image of one store."""

    def __init__(
        self,
        raw_shape: tuple[int, ...],
        pixel_size_um: float,
        plane_axis: Literal["z", "t"],
        z_spacing_um: float | None,
    ) -> None:
        if len(raw_shape) not in (3, 4):
            raise ValueError(f"raw must be (C, Y, X) or (P, C, Y, X), got shape {raw_shape}")
        if plane_axis not in ("z", "t"):
            raise ValueError(f"plane_axis must be 'z' or 't', got {plane_axis!r}")
        if not (pixel_size_um and pixel_size_um > 0):
            raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
        self.axes = "cyx" if len(raw_shape) == 3 else f"{plane_axis}cyx"
        self.disk_axes = "czyx" if self.axes == "zcyx" else self.axes
        self.planes = raw_shape[:-3]
        self.yx = tuple(raw_shape[-2:])
        self.levels = n_pyramid_levels(self.yx)
        self.scale = {
            "c": 1.0,
            "y": float(pixel_size_um),
            "x": float(pixel_size_um),
            plane_axis: float(z_spacing_um or 1.0),
        }
        self.units = {"y": "micrometer", "x": "micrometer"}
        if plane_axis == "z" and z_spacing_um:
            self.units["z"] = "micrometer"

    def check(self, name: str, shape: tuple[int, ...], *, channels: bool) -> str:
        """Validate ``shape`` against raw; return the on-disk axes of such an array."""
        axes = self.axes if channels else self.axes.replace("c", "")
        n_planes = len(self.planes)
        if (
            len(shape) != len(axes)
            or tuple(shape[-2:]) != self.yx
            or tuple(shape[:n_planes]) != self.planes
        ):
            want = (
                "(P, " * bool(n_planes)
                + ("C, " if channels else "")
                + f"{self.yx[0]}, {self.yx[1]})"
            )
            raise ValueError(
                f"{name} has shape {tuple(shape)}; expected {want} to match raw {self.axes!r}"
            )
        return self.disk_axes if channels else axes

    def to_disk(self, array: da.Array, *, channels: bool) -> da.Array:
        """NGFF wants channel before space: (Z, C, Y, X) is stored as (C, Z, Y, X)."""
        return _as_dask(array.transpose(1, 0, 2, 3) if channels and self.axes == "zcyx" else array)

    def write(
        self, data: da.Array, group: zarr.Group, axes: str, name: str, *, label: bool
    ) -> None:
        kwargs = {
            "scale_factors": [{"y": 2**k, "x": 2**k} for k in range(1, self.levels)],
            "axes": list(axes),
            "scale": {a: self.scale[a] for a in axes},
            "axes_units": {a: u for a, u in self.units.items() if a in axes},
        }
        if label:
            source = {"image-label": {"source": {"image": "../../"}}}  # the root image
            write_labels(
                data, group, name=name, method=Methods.NEAREST, scaler=None, **source, **kwargs
            )
        else:
            write_image(data, group, name=name, method=Methods.LOCAL_MEAN, **kwargs)


def write_result_store(
    path: str | os.PathLike[str],
    *,
    raw: Any,
    pixel_size_um: float,
    channel_names: Sequence[str],
    rates: Any | None = None,
    images: Mapping[str, ImageInput] | None = None,
    labels: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    plane_axis: Literal["z", "t"] = "z",
    z_spacing_um: float | None = None,
) -> Path:
    """Write one image's results as an OME-Zarr 0.5 store, atomically.

    Parameters
    ----------
    path : path
        The store to create (``<stem>.ome.zarr``); an existing one is replaced on success.
    raw : array, shape (C, Y, X) or (P, C, Y, X)
        The input image (numpy or dask), written as the root multiscale image.
    pixel_size_um : float
        Pixel size in micrometres (the y and x scale).
    channel_names : sequence of str
        One name per channel of ``raw`` (stored as omero channel labels).
    rates : array, shape (2, Y, X) or (P, 2, Y, X), optional
        λ mean and λ std (NaN where unidentifiable), stored as float32 image ``rates``.
    images : mapping, optional
        Extra continuous images, ``name -> array`` or ``name -> (array, channel names)``.
        An array has the shape of ``raw`` (any C) or lacks its C axis.
    labels : mapping, optional
        ``name -> integer array (Y, X) or (P, Y, X)``, written under ``labels/`` (bool is
        stored as uint8).
    attrs : mapping, optional
        JSON-able record stored in root attributes under ``"chromarate"``; NaN/inf are
        stored as null.
    plane_axis : {"z", "t"}
        Name of the plane axis of 4-D data.
    z_spacing_um : float, optional
        Z step; without it the z scale is 1 and has no unit.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    shape = tuple(int(n) for n in np.shape(raw))
    layout = _Layout(shape, pixel_size_um, plane_axis, z_spacing_um)
    if len(channel_names) != shape[-3]:
        raise ValueError(f"{len(channel_names)} channel name(s) for {shape[-3]} channel(s) in raw")
    record = _json_safe(dict(attrs or {}))
    extra = {_check_name(name): item for name, item in (images or {}).items()}
    if rates is not None:
        extra = {"rates": (da.asarray(rates).astype(np.float32), RATE_CHANNELS), **extra}
    # validate everything before writing anything
    plan = [("", _as_dask(raw), layout.check("raw", shape, channels=True), list(channel_names))]
    for name, item in extra.items():
        array, names = item if isinstance(item, tuple) else (item, None)
        array = _as_dask(array)
        with_c = array.ndim == len(layout.axes)
        axes = layout.check(name, array.shape, channels=with_c)
        n_c = array.shape[-3] if with_c else 1
        names = list(names) if names is not None else [f"{name}_{i}" for i in range(n_c)]
        if len(names) != n_c:
            raise ValueError(f"{len(names)} channel name(s) for {n_c} channel(s) in {name!r}")
        plan.append((name, array, axes, names))
    masks = []
    for name, mask in (labels or {}).items():
        mask = _as_dask(mask)
        if mask.dtype == bool:
            mask = mask.astype(np.uint8)
        if mask.dtype.kind not in _INT_LABEL_KINDS:
            raise ValueError(f"label {name!r} must hold integers, not {mask.dtype}")
        masks.append(
            (_check_name(name), mask, layout.check(f"label {name!r}", mask.shape, channels=False))
        )

    with atomic_dir(path) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        for name, array, axes, names in plan:
            group = root.create_group(name) if name else root
            with_c = "c" in axes
            layout.write(
                layout.to_disk(array, channels=with_c), group, axes, name or "raw", label=False
            )
            _omero(group, names, layout.levels)
        for name, mask, axes in masks:
            layout.write(mask, root, axes, name, label=True)
        if masks:
            # ome-zarr 0.18 writes labels/zarr.json without the 0.5 "version" key
            root["labels"].attrs["ome"] = {"version": "0.5", **dict(root["labels"].attrs["ome"])}
        root.attrs["chromarate"] = record
    log.info("wrote %s (%d level(s))", path, layout.levels)
    return path
