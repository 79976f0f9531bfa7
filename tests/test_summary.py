"""Tidy tables from a store written by the in-process stages (no Prefect)."""

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.process import process_image
from pipeline.simulate import simulate_folder
from pipeline.summary import IMAGE_COLUMNS, OBJECT_COLUMNS, TILE_COLUMNS, summarize_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    simulate_folder(root / "images", truth_dir=root / "truth", cases=[("step", 1)],
                    shape=(96, 96), seed=4)
    s = Settings(estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"denoise": "none", "tile_px": 32, "overlap_px": 8})
    m = process_image(root / "images" / "step_1ch_s4.tif", root / "out", s)
    assert process_image(root / "images" / "step_1ch_s4.tif", root / "out", s)["skipped"]
    return m["store"]


def test_tables_have_schema_units_and_provenance(store):
    t = summarize_store(store)
    assert list(t["images"].columns) == IMAGE_COLUMNS
    assert list(t["tiles"].columns) == TILE_COLUMNS
    assert list(t["nuclei"].columns) == list(t["domains"].columns) == OBJECT_COLUMNS
    img = t["images"].iloc[0]
    assert img["file"] == "step_1ch_s4.tif" and img["channel_model"] == "single-channel"
    assert img["calibration_source"] == "auto" and img["pixel_size_um"] == 0.02
    assert img["n_tiles"] == len(t["tiles"]) > 1
    assert 0 < img["fraction_identifiable"] <= 1 and np.isfinite(img["lambda_median"])
    nuc = t["nuclei"].iloc[0]
    assert nuc["area_um2"] == pytest.approx(96 * 96 * 0.02**2)
    assert np.isnan(t["images"]["lambda_std_mean"]).all()  # closed form: no uncertainty
