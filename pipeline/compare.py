"""λ compared between conditions at the level of images or replicates.

The conditions come from a **sample sheet** (:mod:`pipeline.samples`, whose names are
re-exported here).

A **comparison** (``chromarate compare OUT --by condition``) never treats the nuclei of one
image as independent: nuclei of one image share its staining, focus, calibration and cell
state. Each image gets one number, the median λ of its nuclei (each nucleus: the median of
its identifiable pixels, ``lambda_median`` of ``summary_nuclei.csv``); with ``unit`` set to a
column such as ``replicate``, each replicate gets the median of its images' numbers. Per
condition, the reported λ is the median of these unit numbers, with a bootstrap 95 %
interval that resamples units (images or replicates), not nuclei. Each condition's
difference from the reference has a bootstrap interval (units resampled within each
condition) and a two-sided p-value from a rank (Mann-Whitney) test whose null distribution
comes from shuffling whole units between the two conditions (exact over every relabelling
when there are at most ``N_PERM`` of them). With several conditions, ``p_holm`` adjusts these
p-values for the number of conditions compared with the reference (Holm's step-down method,
:func:`holm`).

Examples
--------
>>> import pandas as pd
>>> nuclei = pd.DataFrame({"file": ["a.tif", "a.tif", "b.tif", "c.tif", "d.tif"],
...                        "condition": ["ctl", "ctl", "ctl", "trt", "trt"],
...                        "lambda_median": [1.0, 1.2, 1.1, 2.0, 2.2]})
>>> t = compare_conditions(nuclei, "condition", reference="ctl")
>>> t[["condition", "n_images", "n_nuclei", "median_lambda"]].to_string(index=False)
'condition  n_images  n_nuclei  median_lambda\\n      ctl         2         3            1.1\\n      trt         2         2            2.1'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .io.atomic import atomic_write_text
from .samples import (
    FLOAT_FORMAT,
    SAMPLES_FILE,
    attach_samples,
    file_key,
    match_samples,
    read_sample_sheet,
    sheet_order,
    write_sample_sheet,
)

__all__ = [
    "COMPARE_COLUMNS",
    "N_BOOT",
    "N_PERM",
    "SAMPLES_FILE",
    "SEED",
    "attach_samples",
    "bootstrap_median_ci",
    "compare_conditions",
    "file_key",
    "holm",
    "match_samples",
    "permutation_p",
    "read_sample_sheet",
    "sheet_order",
    "unit_values",
    "write_comparison",
    "write_sample_sheet",
]

SEED = 20240611  # a constant: the same tables always give the same intervals and p-values
N_BOOT = 10_000
N_PERM = 20_000
COMPARE_COLUMNS = ["unit", "n_units", "n_images", "n_nuclei", "median_lambda", "ci95_low",
                   "ci95_high", "reference", "diff_vs_reference", "diff_ci95_low",
                   "diff_ci95_high", "p_value", "p_holm", "p_min", "note"]
"""Columns of ``compare_<by>.csv`` after the first (the ``by`` column, one row per value)."""


def unit_values(nuclei: pd.DataFrame, by: str, unit: str = "image",
                value: str = "lambda_median") -> pd.DataFrame:
    """One row per unit: ``by``, ``unit_id``, ``value``, ``n_images``, ``n_nuclei``.

    An image's value is the median of ``value`` over its nuclei (all planes); with ``unit``
    a column (e.g. ``replicate``), a unit's value is the median of its images' values.
    Nuclei without a finite value (no identifiable pixel) are left out, and so are rows
    with no ``by`` value.
    """
    need = ["file", by, value] + ([] if unit == "image" else [unit])
    missing = [c for c in need if c not in nuclei.columns]
    if missing:
        raise ValueError(f"the nuclei table has no column(s) {', '.join(missing)}"
                         + (" (give the run a sample sheet: --samples sheet.csv)"
                            if by in missing or unit in missing else ""))
    df = nuclei[need].copy()
    df[value] = pd.to_numeric(df[value], errors="coerce")
    df = df[np.isfinite(df[value]) & df[by].notna() & (df[by].astype(str) != "")]
    df[by] = df[by].astype(str)
    images = (df.groupby([by, "file"] + ([] if unit == "image" else [unit]), sort=False)
              [value].agg(value="median", n_nuclei="size").reset_index())
    if unit == "image":
        out = images.rename(columns={"file": "unit_id"}).assign(n_images=1)
    else:
        images[unit] = images[unit].astype(str)
        out = (images.groupby([by, unit], sort=False)
               .agg(value=("value", "median"), n_images=("file", "size"),
                    n_nuclei=("n_nuclei", "sum")).reset_index()
               .rename(columns={unit: "unit_id"}))
    return out[[by, "unit_id", "value", "n_images", "n_nuclei"]]


def _boot_medians(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    return np.median(values[idx], axis=1)


def bootstrap_median_ci(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = SEED,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (NaN with fewer than 2).

    >>> lo, hi = bootstrap_median_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> 1.0 <= lo < 3.0 < hi <= 5.0
    True
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return math.nan, math.nan
    meds = _boot_medians(v, np.random.default_rng(seed), n_boot)
    a = (1 - level) / 2
    lo, hi = np.quantile(meds, [a, 1 - a])
    return float(lo), float(hi)


def _diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float = 0.95
             ) -> tuple[float, float]:
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    d = _boot_medians(a, rng, n_boot) - _boot_medians(b, rng, n_boot)
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def permutation_p(a: Sequence[float], b: Sequence[float], *, n_perm: int = N_PERM,
                  seed: int = SEED) -> tuple[float, float]:
    """Two-sided p-value of a Mann-Whitney (rank) test by permutation of whole units, and
    the smallest p-value the design allows (both NaN with fewer than 2 units on a side).

    Uses :func:`scipy.stats.mannwhitneyu` with a :class:`scipy.stats.PermutationMethod`:
    exact over every split of the pooled units into groups of the two sizes when there are
    at most ``n_perm`` splits, else ``n_perm`` random ones. Ties are handled exactly.

    >>> p, p_min = permutation_p([1, 2, 3], [10, 11, 12])
    >>> round(p, 3), round(p_min, 3)
    (0.1, 0.1)
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:  # no test with one unit on a side
        return math.nan, math.nan
    n_splits = math.comb(a.size + b.size, a.size)
    method = stats.PermutationMethod(n_resamples=n_perm, rng=np.random.default_rng(seed))
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)
    p_min = 2.0 / n_splits if n_splits <= n_perm else 2.0 / (n_perm + 1)
    return min(p, 1.0), min(p_min, 1.0)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (step-down Bonferroni), in the order given; NaN stays NaN and
    does not count as a test.

    With m tests and the p-values sorted from the smallest, the i-th (from 0) is multiplied by
    m - i; each adjusted value is then at least the one before it, and at most 1. Rejecting
    where the adjusted value is below α keeps the chance of any false rejection at most α,
    whatever the dependence between the tests.

    >>> holm([0.01, 0.04, 0.03, 0.005]).round(6).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def compare_conditions(nuclei: pd.DataFrame, by: str = "condition", *,
                       reference: str | None = None, unit: str = "image",
                       value: str = "lambda_median", order: Sequence[str] | None = None,
                       n_boot: int = N_BOOT, n_perm: int = N_PERM, seed: int = SEED
                       ) -> pd.DataFrame:
    """The table of ``compare_<by>.csv``: one row per value of ``by``.

    Parameters
    ----------
    nuclei : DataFrame
        ``summary_nuclei.csv`` with the sample sheet's columns (``file``, ``by``, ``value``).
    by : str
        The column that names the conditions.
    reference : str, optional
        The condition the others are compared with; default: the first in ``order`` (the
        sample sheet's order), else the first in the table.
    unit : str
        ``"image"``, or a column (``"replicate"``) whose values group images into units;
        units are resampled and permuted, never nuclei.
    value : str
        The per-nucleus λ column.
    order : sequence of str, optional
        Order of the conditions in the output.
    n_boot, n_perm, seed : int
        Bootstrap resamples, random relabellings (when not exact) and the random seed.

    Returns
    -------
    DataFrame
        ``by`` then :data:`COMPARE_COLUMNS`. ``p_value`` is each comparison's own p-value;
        ``p_holm`` the same adjusted by :func:`holm` across the conditions compared with the
        reference (NaN for the reference and where there is no test).
    """
    units = unit_values(nuclei, by, unit, value)
    found = list(dict.fromkeys(units[by]))
    if not found:
        raise ValueError(f"no nucleus has both a '{by}' and a finite {value}")
    names = [c for c in (order or []) if c in found] + [c for c in found
                                                        if c not in (order or [])]
    ref = names[0] if reference is None else str(reference)
    if ref not in names:
        raise ValueError(f"reference {ref!r} is not a value of '{by}' ({', '.join(names)})")
    groups = {c: units.loc[units[by] == c, "value"].to_numpy(np.float64) for c in names}
    rows = []
    for i, c in enumerate(names):
        g, r = groups[c], groups[ref]
        sub = units[units[by] == c]
        lo, hi = bootstrap_median_ci(g, n_boot=n_boot, seed=seed + i)
        notes = []
        if g.size < 2:
            notes.append(f"1 {unit}: no interval")
        if c == ref:
            d, dlo, dhi, p, p_min = 0.0, math.nan, math.nan, math.nan, math.nan
        else:
            d = float(np.median(g) - np.median(r))
            dlo, dhi = _diff_ci(g, r, n_boot, seed + 1000 + i)
            p, p_min = permutation_p(g, r, n_perm=n_perm, seed=seed + 2000 + i)
            if np.isnan(p):
                notes.append(f"no test: needs 2 or more {unit}s on each side")
            elif p_min > 0.05:
                notes.append(f"too few {unit}s for p < 0.05 (smallest possible p "
                             f"{p_min:.2g})")
        rows.append({by: c, "unit": unit, "n_units": int(g.size),
                     "n_images": int(sub["n_images"].sum()),
                     "n_nuclei": int(sub["n_nuclei"].sum()),
                     "median_lambda": float(np.median(g)), "ci95_low": lo, "ci95_high": hi,
                     "reference": ref, "diff_vs_reference": d, "diff_ci95_low": dlo,
                     "diff_ci95_high": dhi, "p_value": p, "p_min": p_min,
                     "note": "; ".join(notes)})
    table = pd.DataFrame(rows, columns=[by] + COMPARE_COLUMNS)
    table["p_holm"] = holm(table["p_value"])  # across the conditions tested against ref
    return table


def write_comparison(table: pd.DataFrame, out_dir: str | Path, by: str) -> Path:
    """Write ``OUT/compare_<by>.csv`` atomically, floats to 6 significant digits."""
    path = Path(out_dir) / f"compare_{by}.csv"
    atomic_write_text(path, table.to_csv(index=False, float_format=FLOAT_FORMAT))
    return path
