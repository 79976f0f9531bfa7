"""Masking and per-nucleus summaries (the inspect widget's arithmetic), without a viewer."""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd

from plugins.summary import (
    SUMMARY_COLUMNS,
    format_summary,
    label_summaries,
    visible_mask,
    write_summaries_csv,
)

PX = 0.025  # as in conftest.py


def test_visible_mask_rules(synthetic_maps: dict) -> None:
    m = synthetic_maps
    keep = visible_mask(m["lam"], m["std"], m["ident"], std_max=0.5)
    assert not keep[:16].any() and not keep[-8:, :8].any() and keep[16:-8].all()
    assert visible_mask(m["lam"], m["std"], m["ident"], std_max=None)[:16].all()
    assert visible_mask(m["lam"], m["std"], m["ident"], require_identifiable=False)[-8:, :8].sum() == 0
    unknown = np.full_like(m["std"], np.nan)  # no uncertainty yet: never hides
    assert visible_mask(m["lam"], unknown, std_max=0.0)[:16].all()


def test_visible_mask_stays_lazy_on_dask(synthetic_maps: dict) -> None:
    lam = da.from_array(synthetic_maps["lam"], chunks=32)
    keep = visible_mask(lam, da.from_array(synthetic_maps["std"], chunks=32), std_max=0.5)
    assert isinstance(keep, da.Array)
    assert np.array_equal(keep.compute(), visible_mask(synthetic_maps["lam"],
                                                       synthetic_maps["std"], std_max=0.5))


def test_label_summaries_per_nucleus(synthetic_maps: dict) -> None:
    m = synthetic_maps
    keep = visible_mask(m["lam"], m["std"], m["ident"], std_max=0.5)
    rows = label_summaries(m["lam"], m["labels"], keep, pixel_size_um=PX, std=m["std"],
                           file="cell.tif", plane=0)
    assert [r["nucleus_id"] for r in rows] == [1, 2]
    one, two = rows
    assert one["n_pixels"] == 50 * 30 and math.isclose(one["area_um2"], 1500 * PX**2)
    assert math.isclose(one["fraction_visible"], 44 / 50)  # rows 10-15 have std 0.9
    assert one["lambda_mean"] == 1.0 and two["lambda_mean"] == 2.0 and two["lambda_sd"] == 0
    assert math.isclose(one["lambda_std_mean"], 0.1, rel_tol=1e-6)
    assert set(one) == set(SUMMARY_COLUMNS) and one["file"] == "cell.tif"


def test_whole_field_without_nuclei(synthetic_maps: dict) -> None:
    m = synthetic_maps
    (row,) = label_summaries(m["lam"], None, visible_mask(m["lam"]), pixel_size_um=PX)
    assert row["nucleus_id"] == 0 and row["n_pixels"] == m["lam"].size
    assert 1.0 < row["lambda_mean"] < 2.0 and math.isnan(row["lambda_std_mean"])
    (empty,) = label_summaries(m["lam"], None, np.zeros(m["lam"].shape, bool), pixel_size_um=PX)
    assert math.isnan(empty["lambda_mean"]) and empty["fraction_visible"] == 0
    assert "n/a" in format_summary(empty) and "whole field" in format_summary(empty)
    assert format_summary(None) == "no nucleus here"


def test_csv_is_tidy_with_provenance(synthetic_maps: dict, tmp_path: Path) -> None:
    m = synthetic_maps
    rows = label_summaries(m["lam"], m["labels"], visible_mask(m["lam"]), pixel_size_um=PX)
    out = write_summaries_csv(rows, tmp_path / "sub" / "s.csv",
                              provenance={"source": "/data/cell.tif", "std_max": None,
                                          "calibration": [{"offset": 100}]})
    table = pd.read_csv(out)
    assert list(table.columns)[: len(SUMMARY_COLUMNS)] == list(SUMMARY_COLUMNS)
    assert len(table) == 2 and set(table["source"]) == {"/data/cell.tif"}
    assert table["std_max"].isna().all() and "offset" in table["calibration"][0]
