"""The inspect widget's plain half: layer metadata, pyramid levels, lazy masking arithmetic and
the summaries its worker threads compute. No napari, no Qt.

The widget (:mod:`plugins.inspect_widget`) gathers level-0 arrays of one plane with
:func:`plane_arrays` and hands them to :func:`summarise_nuclei` or :func:`summarise_shapes` in a
worker thread; the statistics themselves are :mod:`plugins.summary`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plugins.summary import label_summaries, polygon_mask, region_summary

__all__ = ["layer_info", "levels", "materialize", "pack", "plane_arrays", "provenance",
           "qc_text", "summarise_nuclei", "summarise_shapes", "where"]


def layer_info(layer: Any) -> dict[str, Any]:
    """The layer's ``metadata["chromarate"]`` (see :mod:`plugins.layers`), or ``{}``."""
    return dict(getattr(layer, "metadata", {}).get("chromarate", {}))


def levels(data: Any, multiscale: bool) -> list[Any]:
    """A layer's data as a list of pyramid levels (one for a single-scale layer)."""
    return list(data) if multiscale else [data]


def pack(parts: list[Any], multiscale: bool) -> Any:
    """The inverse of :func:`levels`: napari data from a list of levels."""
    return parts if multiscale else parts[0]


def where(mask: Any, a: Any, b: Any) -> Any:
    """``where(mask, a, b)``, lazily when either array is dask."""
    if any(hasattr(x, "dask") for x in (mask, a, b)):
        import dask.array as da

        return da.where(mask, a, b)
    return np.where(mask, a, b)


def materialize(x: Any) -> np.ndarray | None:
    """``np.asarray`` of a possibly lazy (dask) array, safe in a worker thread.

    dask runs its global callbacks (napari registers its opportunistic cache as one) through
    ``dask.callbacks.local_callbacks``, which swaps the global set without a lock: a worker's
    compute racing the GUI thread's slicing could run the cache in both, and one's finish then
    cleared the other's start times (``KeyError`` in ``dask/cache.py``). Passing explicit, empty
    callbacks leaves the global set alone.
    """
    if x is None:
        return None
    if hasattr(x, "dask"):
        return np.asarray(x.compute(callbacks=()))
    return np.asarray(x)


def plane_arrays(lam: Any, source: Any, visible: Any, others: dict[str, Any | None],
                 plane: int) -> dict[str, Any]:
    """Full-resolution arrays of one plane, still lazy where they were: ``lam`` (from
    ``source``, the λ layer's unmasked data), ``visible`` (its level-0 mask) and one entry per
    layer of ``others`` (None stays None)."""
    arrays = {"lam": levels(source, lam.multiscale)[0], "visible": visible}
    for key, layer in others.items():
        arrays[key] = None if layer is None else levels(layer.data, layer.multiscale)[0]
    if lam.ndim == 3:
        arrays = {k: None if v is None else v[plane] for k, v in arrays.items()}
    return arrays


def provenance(lam: Any, plane: int) -> dict[str, Any]:
    """The keyword arguments every summary row of ``lam`` carries: pixel size, file, plane."""
    info = layer_info(lam)
    return {
        "pixel_size_um": float(info.get("pixel_size_um") or lam.scale[-1]),
        "file": Path(str(info.get("attrs", {}).get("source", info.get("store", lam.name)))).name,
        "plane": plane,
    }


def qc_text(attrs: dict[str, Any], plane: int = 0) -> str:
    """One line for the viewer: the plane's calibration (source, confidence) and QC flags,
    as the run recorded them (the codes are explained in docs/your-own-images.md)."""
    from pipeline.summary import image_flags

    planes = attrs.get("planes") or []
    if not planes:
        return "no run record in this store"
    rec = planes[min(plane, len(planes) - 1)]
    cal = rec.get("calibration") or {}
    text = f"calibration {cal.get('source') or cal.get('mode') or 'unknown'}"
    if cal.get("confidence") is not None:
        text += f" (confidence {float(cal['confidence']):.2g})"
    if cal.get("identifiable") is False:
        text += ", not identifiable"
    if cal.get("flat_field"):
        text += f", flat-field corrected ({Path(str(cal['flat_field'].get('path', ''))).name})"
    if cal.get("registration"):
        dy, dx = (float(v) * 1000 for v in cal["registration"]["offset_um"])
        text += f", heterochromatin channel moved back by ({dy:+.1f}, {dx:+.1f}) nm"
    if (cal.get("defect_pixels") or {}).get("pixels"):
        text += f", {int(cal['defect_pixels']['pixels'])} defect pixel(s) replaced"
    check = cal.get("check") or {}
    if check.get("contradicted") and check.get("preferred_ratio") is not None:
        text += (f", contradicted by the image (heterochromatin/chromatin ratio "
                 f"{float(check['preferred_ratio']) - 1:+.0%}"
                 f"{', applied' if check.get('applied') else ''})")
    try:
        flags = image_flags(attrs, min(plane, len(planes) - 1),
                            float(rec.get("fraction_identifiable", 1.0)))
    except (KeyError, TypeError, ValueError):
        flags = []
    return f"{text}; flags: {', '.join(flags) or 'none'}"


def summarise_nuclei(arrays: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    """One row per nucleus of ``arrays["labels"]`` (or one for the whole field): computes the
    (possibly lazy) plane, so it runs in a worker thread."""
    a = {k: materialize(v) for k, v in arrays.items()}
    return label_summaries(a["lam"], a["labels"], a["visible"], std=a["std"],
                           identifiable=a["identifiable"], **kwargs)


def summarise_shapes(arrays: dict[str, Any], polygons: list[tuple[int, np.ndarray]],
                     chosen: set[int], **kwargs: Any
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-shape rows and the row of the ``chosen`` shapes together: runs in a worker
    thread."""
    a = {k: materialize(v) for k, v in arrays.items()}
    stats = {"std": a["std"], "identifiable": a["identifiable"], **kwargs}

    def summary(numbers: list[int]) -> dict[str, Any]:
        mask = polygon_mask([p for n, p in polygons if n in numbers], a["lam"].shape)
        return region_summary(a["lam"], mask, a["visible"], selection=",".join(map(str, numbers)),
                              **stats)

    return [summary([n]) for n, _ in polygons], summary(sorted(chosen))
