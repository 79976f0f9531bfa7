"""One image end to end: TIFF -> fields -> rate map -> ``<stem>.ome.zarr``.

This is the single-process path behind ``chromarate run``; it holds the whole plane in memory
(tiling and streaming come with the Prefect flow). Every write is atomic: a killed run leaves
no partial store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import Settings
from .estimate import estimate_closed_form
from .io import inspect_tiff, read_planes, write_result_store
from .physics.chromatin import ChromatinModel
from .physics.observation import to_fields

__all__ = ["process_image", "result_path"]

log = logging.getLogger(__name__)

def result_path(image: str | Path, out_dir: str | Path) -> Path:
    """Where the store for ``image`` goes: ``OUT/<stem>.ome.zarr``."""
    name = Path(image).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(out_dir) / f"{name}.ome.zarr"


def process_image(
    path: str | Path,
    out_dir: str | Path,
    settings: Settings,
    *,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Estimate the rate map of every plane of one TIFF and write ``OUT/<stem>.ome.zarr``.

    Returns a small JSON-able manifest (paths, per-plane bandwidths and lambda statistics).
    Raises :class:`pipeline.io.InputError` for files that cannot be understood.
    """
    if settings.method != "closed-form":
        raise NotImplementedError(
            f"method {settings.method!r} is not available yet; use --method closed-form"
        )
    t0 = time.perf_counter()
    info = inspect_tiff(path, pixel_size_um=settings.pixel_size_um)
    planes = read_planes(path, info)  # (P, C, Y, X) dask
    roles = settings.roles_for(info.n_channels)
    model = ChromatinModel(settings.physics.phi_max, settings.physics.interface_length_um)
    px = float(info.pixel_size_um)
    n_planes, _, h, w = planes.shape
    rates = np.full((n_planes, 2, h, w), np.nan, dtype=np.float32)
    ident = np.zeros((n_planes, h, w), dtype=np.uint8)
    plane_records = []
    for p in range(n_planes):
        if progress:
            progress({"stage": "plane", "image": str(path), "plane": p, "planes": n_planes})
        raw = np.asarray(planes[p].compute(), dtype=np.float64)
        if not np.all(np.isfinite(raw)):
            from .io import InputError

            raise InputError(path, f"plane {p} holds NaN or infinite values",
                             "mask or fix those pixels before running")
        fields, calib = to_fields(
            raw, roles, settings.calibration_for(len(roles)), phi_max=model.phi_max
        )
        result = estimate_closed_form(fields, model, px, settings.estimator, seed=settings.seed)
        rates[p, 0] = result.lam
        ident[p] = result.identifiable
        lam_ok = result.lam[np.isfinite(result.lam)]
        plane_records.append({
            "plane": p,
            "delta_um": result.delta_um,
            "window_um": result.window_um,
            "selection": result.selection,
            "calibration": calib,
            "fraction_identifiable": float(result.identifiable.mean()),
            "lambda_median": float(np.median(lam_ok)) if lam_ok.size else float("nan"),
        })
    squeeze = info.plane_axis is None
    raw_all = planes[0] if squeeze else planes
    attrs = {
        "version": __version__,
        "source": str(Path(path).resolve()),
        "axes": info.axes,
        "pixel_size_um": px,
        "pixel_size_source": info.pixel_size_source,
        "channel_roles": list(roles),
        "method": settings.method,
        "settings": settings.model_dump(mode="json"),
        "planes": plane_records,
        "lambda_std": "NaN: the closed-form estimator gives no uncertainty yet",
    }
    store = write_result_store(
        result_path(path, out_dir),
        raw=raw_all,
        pixel_size_um=px,
        channel_names=list(roles),
        rates=rates[0] if squeeze else rates,
        labels={"identifiable": ident[0] if squeeze else ident},
        attrs=attrs,
        plane_axis=(info.plane_axis or "z").lower(),
    )
    return {
        "image": str(path),
        "store": str(store),
        "planes": plane_records,
        "seconds": time.perf_counter() - t0,
    }
