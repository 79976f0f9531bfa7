"""Tidy tables for collaborators, read back from finished result stores.

One row per observation, units in the column names, and the provenance columns a biologist
needs to join with a sample sheet (``file``, ``plane``, ``channel_model``, ``calibration``,
``calibration_source``, ``pixel_size_um``, ``method``). λ is dimensionless; every statistic
uses only identifiable pixels inside nuclei.

Examples
--------
>>> sorted(set(IMAGE_COLUMNS) & set(OBJECT_COLUMNS))[:3]
['calibration', 'calibration_source', 'channel_model']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .compare import FLOAT_FORMAT, attach_samples
from .config import pixel_size_untested
from .io.atomic import atomic_write_text
from .object_table import (  # the per-object table; its names stay importable from here
    LAMBDA_DDOF,
    OBJECT_STATS,
    _finite_mean,
    _lambda_stats,
    _mode,
    object_stats,
)
from .segment import touches_border

__all__ = [
    "FLAGS",
    "correlated_noise",
    "image_flags",
    "IMAGE_COLUMNS",
    "LAMBDA_DDOF",
    "OBJECT_COLUMNS",
    "OBJECT_STATS",
    "PROVENANCE",
    "TILE_COLUMNS",
    "object_stats",
    "summarize_store",
    "write_summaries",
]

log = logging.getLogger(__name__)

PROVENANCE = ["file", "plane", "channel_model", "channels", "calibration",
              "calibration_source", "flat_field", "channel_offset_um", "pixel_size_um", "method"]
"""The columns every table starts with. ``flat_field``: the name of the ``--flat-field`` file
the plane was divided by, empty when none; ``channel_offset_um``: the ``--channel-offset``
``DY,DX`` the heterochromatin channel was moved back by, empty when none."""
IMAGE_COLUMNS = PROVENANCE + [
    "pixel_size_source", "delta_um", "window_um", "support_um", "bandwidth_reliability",
    "denoise", "lambda_median", "lambda_iqr", "lambda_mean", "lambda_std_mean",
    "fraction_identifiable", "n_nuclei", "n_nuclei_without_lambda", "n_domains", "nuclei_mode",
    "n_tiles", "tile_px", "halo_px", "fit_seconds",
    "code_version", "flags",
]
"""Image rows (one per plane). ``support_um``: the derivative support, how far inside a
nucleus λ starts; ``n_nuclei_without_lambda``: nuclei with no pixel that far inside (no λ; too
small for the bandwidth). ``flags`` lists, separated by ``;``, the QC codes of :data:`FLAGS`
that apply to the plane (empty: none)."""
FLAGS = {
    "calibration-auto": "no --calibration pairs: intensities were mapped to fields from the "
                        "image or by the percentile rule",
    "calibration-unidentifiable": "the automatic calibration could not be determined from "
                                  "the image (its record says why)",
    "calibration-contradicted": "the image's physics contradicts the --calibration pairs "
                                "given (two channels; the record's check says by how much); "
                                "unless corrected, the std includes the difference",
    "offset-contradicted": "the image's dark background around the nuclei contradicts the "
                           "offsets of the --calibration pairs given (by 10 % or more of the "
                           "nuclei's signal): λ carries an offset error the std does not "
                           "include",
    "whole-field": "no background around nuclei: the whole field was treated as one nucleus",
    "no-nuclei": "segmentation found no nucleus: no λ is reported",
    "no-segmentation": "--no-segment: λ is reported over the whole field",
    "bandwidth-at-grid-edge": "the automatic bandwidth sits at the edge of its candidate grid",
    "noise-dominated": "no automatic bandwidth gave a rate map that is at least half signal: "
                       "λ's pattern there is mostly noise (the flattest map was taken)",
    "nuclei-too-small": "the nuclei are too small for the bandwidth the noise needs: too few "
                        "pixels lie farther inside them than the derivative support, so λ is "
                        "reported only where one does, often nowhere (check --pixel-size)",
    "correlated-noise": "the noise is correlated between neighbouring pixels: expected in a "
                        "STORM/PALM rendering; a camera's noise is independent from pixel to "
                        "pixel, so a camera image with this flag was smoothed or denoised "
                        "before chromarate, and λ's bandwidth and std cannot be trusted: run "
                        "on the raw image",
    "defect-pixels": "single hot or dead pixels (a camera's defects) were replaced by the "
                     "median of their neighbours before calibration (the calibration "
                     "record's defect_pixels says how many per channel; --defect-pixels off "
                     "keeps them)",
    "saturated": "pixels at the detector's ceiling (clipped): no λ is reported within the "
                 "derivative support of them",
    "low-identifiable-fraction": "under half of the nuclei's pixels have an identifiable λ",
    "axes-assumed": "the file does not name its axes: pages were read as Z planes",
    "z-scale-unknown": "no Z step known: the store's z scale is 1 with no unit",
    "pixel-size-untested": "the pixel size lies outside 0.01-0.06 um, where accuracy was "
                           "measured: λ there is not validated",
    "empty-plane": "a channel of the plane has one value everywhere: no λ reported",
    "no-signal": "a channel of the plane shows no structure above its noise (an empty field "
                 "of view, a plane above or below the cells): no λ reported",
    "nan-pixels": "pixels that are NaN in the file (a NaN background, a masked region) were "
                  "read as outside the nuclei: no λ within the derivative support of them",
    "intensity-drift": "the plane's intensity above the dark level differs by over 10 % from "
                       "that of the plane whose calibration the stack shares (bleaching, "
                       "depth): its λ shifts as under a calibration error",
    "series-skipped": "the file holds several image series (e.g. positions): only the first "
                      "was read",
}
"""QC codes of the ``flags`` column and what each means (docs/your-own-images.md)."""
LOW_IDENTIFIABLE = 0.5
"""Below this fraction of identifiable pixels inside nuclei, a plane is flagged."""
TILE_COLUMNS = PROVENANCE + ["tile", "y0_px", "y1_px", "x0_px", "x1_px",
                             "fraction_identifiable", "lambda_median", "diverged", "retried",
                             "fallback", "cf_nonfinite_px", "cf_degenerate", "dropped_px"]
"""Tile rows. The flags come from :func:`pipeline.tiling.fit_plane`: ``diverged`` (the first
neural fit of the tile diverged), ``retried`` (it was refitted with safer settings),
``fallback`` (``none``, ``retry``: the refit is reported, ``closed-form``: the refit diverged
too and the tile reports its closed-form λ with no std), ``cf_nonfinite_px`` (pixels where
the closed-form estimate was non-finite, never reported as identifiable), ``cf_degenerate``
(the local least-squares system carries too little information anywhere in the tile) and
``dropped_px`` (pixels dropped from the identifiable mask because the fit left no finite
value there). Stores written before these columns existed leave them empty."""
OBJECT_COLUMNS = PROVENANCE + [
    "kind", "label", "nucleus", "n_pixels", "area_um2", "centroid_y_um", "centroid_x_um",
    "lambda_median", "lambda_iqr", "lambda_mean", "lambda_sd", "lambda_std_mean",
    "fraction_identifiable", "distance_to_edge_um", "touches_border",
]
"""Object rows (nuclei and domains): :data:`OBJECT_STATS` over identifiable pixels (less
``fraction_counted``, which is then ``fraction_identifiable``). ``touches_border``: the
object reaches the image border, so it is cut off and its area, centroid and λ describe only
the part in the field."""


def _provenance(attrs: dict[str, Any], plane: int) -> dict[str, Any]:
    rec = attrs["planes"][plane]["calibration"]
    chans = rec["channels"]
    return {
        "file": Path(attrs["source"]).name, "plane": plane, "channel_model": rec["model"],
        "channels": ",".join(c["role"] for c in chans),
        "calibration": ",".join(f"{c['offset']:.6g}:{c['scale']:.6g}" for c in chans),
        "calibration_source": chans[0]["source"],
        "flat_field": Path(rec["flat_field"]["path"]).name if rec.get("flat_field") else "",
        "channel_offset_um": (",".join(f"{v:g}" for v in rec["registration"]["offset_um"])
                              if rec.get("registration") else ""),
        "pixel_size_um": attrs["pixel_size_um"],
        "method": attrs["method"],
    }


def correlated_noise(rec: dict[str, Any]) -> bool:
    """Whether a plane's record holds a channel noise model with a correlated part (the
    fit's ``noise`` record, else the bandwidth selection's): the noise spectrum falls with
    frequency instead of being flat (:mod:`pipeline.estimate.noise`)."""
    models = ((rec.get("noise") or {}).get("channels")
              or (rec.get("selection") or {}).get("noise") or [])
    return any(float(m.get("a", 0.0)) > 0 or float(m.get("a2", 0.0)) > 0 for m in models)


def image_flags(attrs: dict[str, Any], plane: int, fraction_identifiable: float
                ) -> list[str]:
    """The QC codes (:data:`FLAGS`) of one plane of a store, from its record.

    Reads the calibration record (``mode``/``source``: anything but ``"user"`` is automatic;
    ``identifiable`` when the calibration says whether it could be determined; with the
    user's pairs, their ratio ``check`` and ``offset_check``), the nuclei
    record (``mode``, ``n_nuclei``), the bandwidth
    selection (``at_grid_edge``, ``noise_dominated`` and ``nuclei_too_small``, absent in older
    stores), the noise models (:func:`correlated_noise`), the defect pixels replaced and the
    saturated ones, the axes
    and the Z step.
    """
    rec = attrs["planes"][plane]
    flags = []
    cal = rec.get("calibration") or {}
    chans = cal.get("channels") or [{}]
    user = "user" in (cal.get("mode"), cal.get("source"), chans[0].get("source"))
    if not user:  # from the image or the percentile rule
        flags.append("calibration-auto")
        if cal.get("identifiable") is False:
            flags.append("calibration-unidentifiable")
    else:
        if (cal.get("check") or {}).get("contradicted"):
            flags.append("calibration-contradicted")
        if (cal.get("offset_check") or {}).get("contradicted"):
            flags.append("offset-contradicted")
    nuc = (rec.get("segmentation") or {}).get("nuclei") or {}
    mode = nuc.get("mode")
    if mode == "whole-field":
        flags.append("whole-field")
    elif mode == "disabled":
        flags.append("no-segmentation")
    elif not nuc.get("n_nuclei"):
        flags.append("no-nuclei")
    selection = rec.get("selection") or {}
    if selection.get("at_grid_edge") or rec.get("at_grid_edge"):
        flags.append("bandwidth-at-grid-edge")
    if selection.get("noise_dominated"):
        flags.append("noise-dominated")
    if selection.get("nuclei_too_small"):
        flags.append("nuclei-too-small")
    if correlated_noise(rec):
        flags.append("correlated-noise")
    if (cal.get("defect_pixels") or {}).get("pixels"):
        flags.append("defect-pixels")
    if rec.get("empty"):
        flags.append("empty-plane")
    if rec.get("no_signal"):
        flags.append("no-signal")
    if rec.get("intensity_drift"):
        flags.append("intensity-drift")
    if (rec.get("missing") or {}).get("pixels"):
        flags.append("nan-pixels")
    if (rec.get("saturation") or {}).get("pixels"):
        flags.append("saturated")
    if nuc.get("n_nuclei") and fraction_identifiable < LOW_IDENTIFIABLE:
        flags.append("low-identifiable-fraction")
    if attrs.get("axes_source") == "default":
        flags.append("axes-assumed")
    if attrs.get("z_scale"):
        flags.append("z-scale-unknown")
    if attrs.get("series_note"):
        flags.append("series-skipped")
    if pixel_size_untested(attrs.get("pixel_size_um")):
        flags.append("pixel-size-untested")
    return flags


def store_notes(store: str | Path) -> tuple[list[str], list[str]]:
    """The QC flags (all planes) and the notes for the user recorded in one result store.

    Notes: why the whole field was one nucleus, how a file without named axes was read, and
    an unknown Z step. Fraction-based flags need the labels and are left to the tables.
    """
    import zarr

    attrs = dict(zarr.open_group(store, mode="r").attrs["chromarate"])
    flags: list[str] = []
    notes: list[str] = []
    for p, rec in enumerate(attrs.get("planes", [])):
        for flag in image_flags(attrs, p, 1.0):
            if flag not in flags:
                flags.append(flag)
        offsets = (rec.get("calibration") or {}).get("offset_check") or {}
        for note in (rec.get("empty"), rec.get("no_signal"), rec.get("intensity_drift"),
                     (rec.get("missing") or {}).get("note"),
                     offsets.get("statement") if offsets.get("contradicted") else None):
            if note and note not in notes:
                notes.append(note)
        note = ((rec.get("segmentation") or {}).get("nuclei") or {}).get("note")
        if note and note not in notes:
            notes.append(note if len(attrs["planes"]) == 1 else f"plane {p}: {note}")
    notes += [n for n in (attrs.get("axes_note"), attrs.get("z_scale"),
                          attrs.get("series_note"), attrs.get("channels_note")) if n]
    return flags, notes


def _objects(kind: str, labels: np.ndarray, nuclei: np.ndarray, lam: np.ndarray,
             std: np.ndarray, ident: np.ndarray, dist: np.ndarray, px: float,
             base: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``summary_nuclei.csv`` or ``summary_domains.csv`` for one plane."""
    from skimage.measure import regionprops_table

    table = object_stats(labels, lam, std=std, counted=ident, identifiable=ident,
                         pixel_size_um=px)
    if table.empty:
        return []
    edge = regionprops_table(labels, intensity_image=dist, properties=("label",),
                             extra_properties=(_finite_mean,))
    host = regionprops_table(labels, intensity_image=nuclei, properties=("label",),
                             extra_properties=(_mode,))
    border = touches_border(labels)
    table = table.assign(kind=kind, nucleus=host["_mode"], distance_to_edge_um=edge["_finite_mean"],
                         touches_border=table["label"].isin(border))
    cols = [c for c in OBJECT_COLUMNS if c not in base]
    return [base | row for row in table[cols].to_dict("records")]


def _without_lambda(nuclei: np.ndarray, reported: np.ndarray) -> int:
    """How many labels of ``nuclei`` have no ``reported`` pixel.

    >>> n = np.array([[1, 1, 0, 2, 2]]); _without_lambda(n, np.array([[0, 1, 0, 0, 0]], bool))
    1
    """
    ids = np.unique(nuclei[nuclei > 0])
    with_lambda = np.unique(nuclei[(nuclei > 0) & reported])
    return int(ids.size - with_lambda.size)


def summarize_store(store: str | Path) -> dict[str, pd.DataFrame]:
    """Tables ``images``, ``tiles``, ``nuclei`` and ``domains`` for one result store."""
    from .io import open_result_store
    from .memory import release_freed_memory
    from .segment import edge_distance_um

    release_freed_memory()  # what the stages before left in the allocator's heaps
    res = open_result_store(store)
    attrs, px = res["attrs"], res["pixel_size_um"]
    rates = np.asarray(res["rates"])
    labels = {k: np.asarray(v) for k, v in res["labels"].items()}
    if rates.ndim == 3:  # one plane; stacks read back as (P, 2, Y, X)
        rates = rates[None]
        labels = {k: v[None] for k, v in labels.items()}
    images, nuclei_rows, domain_rows = [], [], []
    tiles = []
    for p in range(rates.shape[0]):
        base = _provenance(attrs, p)
        lam, std = rates[p, 0], rates[p, 1]
        ident = labels["identifiable"][p] > 0
        nuc, dom = labels["nuclei"][p], labels["domains"][p]
        rec = attrs["planes"][p]
        # the plane as one object, with the per-object definitions (no regionprops: one region)
        use = ident & np.isfinite(lam)
        med, iqr, mean = _lambda_stats(use, lam)[:3]
        images.append(base | {
            "pixel_size_source": attrs["pixel_size_source"], "delta_um": rec["delta_um"],
            "window_um": rec["window_um"], "support_um": rec.get("support_um", np.nan),
            "bandwidth_reliability": rec["selection"].get("reliability", np.nan),
            "denoise": attrs["denoise"]["method"],
            "lambda_median": med, "lambda_iqr": iqr, "lambda_mean": mean,
            "lambda_std_mean": _finite_mean(use, std),
            "fraction_identifiable": float(ident[nuc > 0].mean()) if (nuc > 0).any() else 0.0,
            "n_nuclei": int(nuc.max()),
            "n_nuclei_without_lambda": _without_lambda(nuc, use),
            "n_domains": int(dom.max()),
            "nuclei_mode": rec["segmentation"]["nuclei"].get("mode"),
            "n_tiles": rec["tiling"]["n_tiles"], "tile_px": rec["tiling"]["tile_px"],
            "halo_px": rec["tiling"]["halo_px"], "fit_seconds": rec["seconds"],
            "code_version": attrs.get("code_version"),
        })
        images[-1]["flags"] = ";".join(image_flags(attrs, p, images[-1]["fraction_identifiable"]))
        dist = edge_distance_um(nuc, px)
        nuclei_rows += _objects("nucleus", nuc, nuc, lam, std, ident, dist, px, base)
        domain_rows += _objects("domain", dom, nuc, lam, std, ident, dist, px, base)
        tiles += [base | {k: t.get(k) for k in TILE_COLUMNS if k not in base}
                  for t in attrs["tiles"] if t["plane"] == p]
    return {
        "images": pd.DataFrame(images, columns=IMAGE_COLUMNS),
        "tiles": pd.DataFrame(tiles, columns=TILE_COLUMNS),
        "nuclei": pd.DataFrame(nuclei_rows, columns=OBJECT_COLUMNS),
        "domains": pd.DataFrame(domain_rows, columns=OBJECT_COLUMNS),
    }


def write_summaries(tables: Iterable[dict[str, pd.DataFrame]], out_dir: str | Path
                    ) -> dict[str, str]:
    """Concatenate per-store tables into ``OUT/summary_<name>.csv`` (atomic writes)."""
    cols = {"images": IMAGE_COLUMNS, "tiles": TILE_COLUMNS, "nuclei": OBJECT_COLUMNS,
            "domains": OBJECT_COLUMNS}
    tables = list(tables)
    paths = {}
    for name, columns in cols.items():
        parts = [t[name] for t in tables if len(t[name])]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        df = attach_samples(df, out_dir)  # the sample sheet's columns, if the run has one
        path = Path(out_dir) / f"summary_{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format=FLOAT_FORMAT))
        paths[name] = str(path)
    return paths
