"""The per-object table: λ statistics, area and centroid of every labelled object.

One function, :func:`object_stats`, serves the run's ``summary_nuclei.csv`` and
``summary_domains.csv`` (:mod:`pipeline.summary`) and the napari export. A whole-field object
has tens of millions of pixels, so the statistics never take a float64 copy of the plane:
moments are summed in float64 a block at a time and quantiles come from a partition.

>>> t = object_stats(np.array([[1, 1], [2, 0]]), np.array([[1.0, 3.0], [5.0, 0.0]]),
...                  pixel_size_um=1.0)
>>> t["lambda_mean"].tolist()
[2.0, 5.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LAMBDA_DDOF", "OBJECT_STATS", "object_stats"]

OBJECT_STATS = [
    "label", "n_pixels", "area_um2", "centroid_y_um", "centroid_x_um", "lambda_median",
    "lambda_iqr", "lambda_mean", "lambda_sd", "lambda_std_mean", "fraction_identifiable",
    "fraction_counted",
]
"""Columns of :func:`object_stats`, the one per-object table (the run's ``summary_nuclei.csv``
and ``summary_domains.csv``, the napari export). ``n_pixels`` and ``area_um2``: all the
object's pixels; λ statistics over its *counted* pixels (identifiable ones in the run, those
shown in the viewer), ``lambda_sd`` with ``ddof`` :data:`LAMBDA_DDOF`, ``lambda_iqr`` the
75th minus the 25th percentile; ``lambda_std_mean`` the mean of the finite per-pixel stds
there; ``fraction_identifiable`` and ``fraction_counted`` shares of the object's pixels."""
LAMBDA_DDOF = 1
"""``lambda_sd`` is the sample standard deviation (n - 1 in the denominator; NaN for one
pixel), in every table."""

def _finite_mean(mask: np.ndarray, image: np.ndarray) -> float:
    v = image[mask]
    ok = np.isfinite(v)
    n = int(ok.sum())
    # summed in float64 without a float64 copy, nor one of the finite values
    return float(np.add.reduce(v, where=ok, dtype=np.float64) / n) if n else np.nan


def _local_centroid(mask: np.ndarray) -> np.ndarray:
    """Mean row and column of the mask's pixels, in its bounding box (from the row and column
    counts: skimage's centroid lists every pixel's coordinates, seconds for a whole field)."""
    n = mask.sum()
    if not n:
        return np.array([np.nan, np.nan])
    h, w = mask.shape
    return np.array([mask.sum(axis=1) @ np.arange(h), mask.sum(axis=0) @ np.arange(w)]) / n


_BLOCK = 1 << 20
"""Values converted to float64 at a time by :func:`_lambda_stats` (a whole-field object has
tens of millions)."""


def _quantiles(v: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(v.astype(float64), qs)`` (linear), computed on ``v`` as it is: ``v`` is
    partitioned in place and only the values beside each quantile are read in float64."""
    n = v.size
    idx = [q / 100.0 * (n - 1) for q in qs]
    lo = [int(np.floor(i)) for i in idx]
    v.partition(sorted({k for j in lo for k in (j, min(j + 1, n - 1))}))
    out = []
    for i, j in zip(idx, lo, strict=True):
        a, b, t = float(v[j]), float(v[min(j + 1, n - 1)]), i - j
        diff = b - a
        out.append(b - diff * (1.0 - t) if t >= 0.5 else a + diff * t)  # numpy's lerp
    return out


def _lambda_stats(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Median, IQR, mean, sd (``ddof`` :data:`LAMBDA_DDOF`) and number of the finite values,
    in float64 a block at a time (a whole-field object would otherwise need a float64 copy of
    the plane)."""
    v = image[mask]
    ok = np.isfinite(v)
    v = v if ok.all() else v[ok]
    if not v.size:
        return np.array([np.nan, np.nan, np.nan, np.nan, 0.0])
    mean = float(v.mean(dtype=np.float64))
    if v.size > LAMBDA_DDOF:
        ss = sum(float(np.square(v[i : i + _BLOCK].astype(np.float64) - mean).sum())
                 for i in range(0, v.size, _BLOCK))
        sd = float(np.sqrt(ss / (v.size - LAMBDA_DDOF)))
    else:
        sd = np.nan
    q1, med, q3 = _quantiles(v, (25, 50, 75))  # partitions v: after the moments
    return np.array([med, q3 - q1, mean, sd, v.size], dtype=np.float64)


def _mode(mask: np.ndarray, image: np.ndarray) -> int:
    v = np.asarray(image[mask], dtype=np.int64)
    return int(np.bincount(v).argmax()) if v.size else 0


def object_stats(labels: Any, lam: Any, *, pixel_size_um: float, std: Any | None = None,
                 counted: Any | None = None, identifiable: Any | None = None,
                 index: Sequence[int] | None = None) -> pd.DataFrame:
    """The per-object table: one row per label > 0 of ``labels``, columns :data:`OBJECT_STATS`.

    Parameters
    ----------
    labels : array_like of int, shape (Y, X)
        The objects (nuclei, domains, a drawn region as 0/1).
    lam : array_like, shape (Y, X)
        λ mean; a non-finite value never counts.
    pixel_size_um : float
        For ``area_um2`` and the centroids (µm from the image's corner pixel centre).
    std : array_like, optional
        λ std; ``lambda_std_mean`` is NaN without it.
    counted : array_like of bool, optional
        The pixels whose λ enters the statistics (default: every finite one).
    identifiable : array_like, optional
        Identifiability mask; ``fraction_identifiable`` is NaN without it.
    index : sequence of int, optional
        Exactly these labels, in this order; one that has no pixel gets ``n_pixels`` 0,
        ``area_um2`` 0 and NaN elsewhere.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2], [1, 0, 2]])
    >>> lam = np.array([[1.0, 2.0, 5.0], [3.0, 9.0, np.nan]])
    >>> t = object_stats(lab, lam, pixel_size_um=0.5, index=[1, 2, 3])
    >>> print(t[["label", "n_pixels", "area_um2", "lambda_median", "lambda_sd"]].to_string(
    ...     index=False))
     label  n_pixels  area_um2  lambda_median  lambda_sd
         1         3      0.75            2.0        1.0
         2         2      0.50            5.0        NaN
         3         0      0.00            NaN        NaN
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int64)  # bool regions, float label layers
    lam = np.asarray(lam)
    use = np.isfinite(lam) if counted is None else np.isfinite(lam) & (np.asarray(counted) != 0)

    def per_object(image: Any, properties: tuple[str, ...], extra: Any) -> pd.DataFrame:
        # one channel a call: regionprops applies extra properties to every channel
        return pd.DataFrame(regionprops_table(labels, intensity_image=image,
                                              properties=properties, extra_properties=extra))

    got = per_object(np.where(use, lam, np.nan), ("label", "area", "bbox"),
                     (_local_centroid, _lambda_stats))

    def mean_per_object(image: np.ndarray) -> np.ndarray:
        return per_object(image, (), (_finite_mean,))["_finite_mean"].to_numpy()

    # each plane-size image is a temporary of its own call: one at a time
    none = np.full(len(got), np.nan)
    means = {
        "std": none if std is None else mean_per_object(np.where(use, np.asarray(std), np.nan)),
        "ident": none if identifiable is None
        else mean_per_object((np.asarray(identifiable) != 0).astype(np.float32)),
    }
    px = float(pixel_size_um)
    table = pd.DataFrame({
        "label": got["label"].astype(np.int64),
        "n_pixels": got["area"].astype(np.int64),
        "area_um2": got["area"] * px**2,
        "centroid_y_um": (got["bbox-0"] + got["_local_centroid-0"]) * px,
        "centroid_x_um": (got["bbox-1"] + got["_local_centroid-1"]) * px,
        "lambda_median": got["_lambda_stats-0"], "lambda_iqr": got["_lambda_stats-1"],
        "lambda_mean": got["_lambda_stats-2"], "lambda_sd": got["_lambda_stats-3"],
        "lambda_std_mean": means["std"], "fraction_identifiable": means["ident"],
        "fraction_counted": got["_lambda_stats-4"] / got["area"],
    }, columns=OBJECT_STATS)
    if index is not None:
        table = (table.set_index("label").reindex(pd.Index(list(index), name="label"))
                 .fillna({"n_pixels": 0, "area_um2": 0.0}).reset_index())
        table["n_pixels"] = table["n_pixels"].astype(np.int64)
    return table
