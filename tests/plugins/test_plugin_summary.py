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
    polygon_mask,
    region_summary,
    shape_polygon,
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
    assert [r["label"] for r in rows] == [r["nucleus_id"] for r in rows] == [1, 2]
    one, two = rows
    assert one["n_pixels"] == 50 * 30 and math.isclose(one["area_um2"], 1500 * PX**2)
    assert math.isclose(one["fraction_visible"], 44 / 50)  # rows 10-15 have std 0.9
    assert one["lambda_mean"] == 1.0 and two["lambda_mean"] == 2.0 and two["lambda_sd"] == 0
    assert math.isclose(one["lambda_std_mean"], 0.1, rel_tol=1e-6)
    assert set(one) == {*SUMMARY_COLUMNS, "nucleus_id"} and one["file"] == "cell.tif"


def test_whole_field_without_nuclei(synthetic_maps: dict) -> None:
    m = synthetic_maps
    (row,) = label_summaries(m["lam"], None, visible_mask(m["lam"]), pixel_size_um=PX)
    assert row["label"] == row["nucleus_id"] == 0 and row["n_pixels"] == m["lam"].size
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


def _box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """The rectangle around pixel rows r0..r1-1 and columns c0..c1-1 (corners between pixels)."""
    return np.array([[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 - 0.5], [r1 - 0.5, c1 - 0.5],
                     [r1 - 0.5, c0 - 0.5]])


def test_polygon_mask_and_shapes() -> None:
    mask = polygon_mask([shape_polygon(_box(2, 5, 1, 7), "rectangle")], (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[2:5, 1:7] = True
    assert np.array_equal(mask, expected)
    two = polygon_mask([_box(0, 2, 0, 2), _box(6, 8, 6, 8)], (8, 8))  # a union
    assert two.sum() == 8 and two[0, 0] and two[7, 7] and not two[4, 4]
    tri = polygon_mask([[(0, 0), (0, 40), (40, 0)]], (64, 64))
    assert tri.sum() == 41 * 42 // 2  # legs of 40 px; centres on the edges count
    ell = polygon_mask([shape_polygon(_box(10, 50, 10, 30), "ellipse", 256)], (64, 64))
    assert abs(ell.sum() - math.pi * 20 * 10) < 20 and ell[30, 20] and not ell[10, 10]
    assert shape_polygon([[0, 0], [5, 5]], "line") is None
    assert shape_polygon([[0, 0], [5, 5], [9, 2]], "path") is None
    stack = shape_polygon(np.c_[np.full(4, 3.0), _box(2, 5, 1, 7)], "rectangle")  # z, y, x
    assert np.array_equal(stack, _box(2, 5, 1, 7))
    assert not polygon_mask([_box(-9, -5, 0, 4)], (8, 8)).any()  # outside the image


def test_region_summary_equals_numpy_on_the_rectangle(synthetic_maps: dict) -> None:
    m = synthetic_maps
    keep = visible_mask(m["lam"], m["std"], m["ident"], std_max=0.5)
    region = polygon_mask([_box(100, 128, 0, 64)], m["lam"].shape)  # unidentifiable corner in
    row = region_summary(m["lam"], region, keep, pixel_size_um=PX, std=m["std"],
                         identifiable=m["ident"], file="cell.tif", plane=0, selection="1")
    lam, ident = m["lam"][100:128, 0:64].astype(np.float64), m["ident"][100:128, 0:64]
    shown = lam[ident != 0]
    assert row["n_pixels"] == 28 * 64 and math.isclose(row["area_um2"], 28 * 64 * PX**2)
    assert math.isclose(row["fraction_identifiable"], (ident != 0).mean())
    assert math.isclose(row["fraction_visible"], shown.size / lam.size)
    assert math.isclose(row["lambda_mean"], shown.mean())  # 1 on the left, 2 from column 48
    assert row["lambda_median"] == np.median(shown) and row["lambda_median"] == 1.0
    assert math.isclose(row["lambda_sd"], shown.std(ddof=1))
    assert math.isclose(row["lambda_std_mean"], 0.1, rel_tol=1e-6)
    assert row["region"] == "selection" and row["label"] is None
    assert set(row) == {*SUMMARY_COLUMNS, "nucleus_id"}
    text = format_summary(row)
    assert text.startswith("selection 1 (plane 0)") and "identifiable" in text
    empty = region_summary(m["lam"], np.zeros_like(region), keep, pixel_size_um=PX)
    assert empty["n_pixels"] == 0 and math.isnan(empty["lambda_mean"])
    assert "none shown" in format_summary(empty)


def test_csv_mixes_nuclei_and_selection_rows(synthetic_maps: dict, tmp_path: Path) -> None:
    m = synthetic_maps
    keep = visible_mask(m["lam"])
    rows = label_summaries(m["lam"], m["labels"], keep, pixel_size_um=PX)
    rows.append(region_summary(m["lam"], polygon_mask([_box(0, 10, 0, 10)], m["lam"].shape),
                               keep, pixel_size_um=PX, selection="1"))
    table = pd.read_csv(write_summaries_csv(rows, tmp_path / "s.csv"))
    assert list(table["region"]) == ["nucleus", "nucleus", "selection"]
    assert list(table["label"][:2]) == [1, 2] and math.isnan(table["label"][2])
    assert "nucleus_id" not in table.columns
    assert table["selection"][2] == 1 and table["n_pixels"][2] == 100
