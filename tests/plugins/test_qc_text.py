"""The inspect widget's calibration and QC line, from a real store's record."""

import numpy as np

from pipeline.config import Settings
from pipeline.process import process_image
from pipeline.simulate import simulate_folder
from plugins.inspect_widget import qc_text


def test_qc_line_names_the_calibration_and_the_flags(tmp_path):
    simulate_folder(tmp_path / "images", truth_dir=tmp_path / "truth", cases=[("smooth", 1)],
                    shape=(64, 64), seed=2)
    s = Settings(method="closed-form", estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"denoise": "none", "tile_px": 64})
    m = process_image(tmp_path / "images" / "smooth_1ch_s2.tif", tmp_path / "out", s)
    from pipeline.io import open_result_store

    attrs = open_result_store(m["store"])["attrs"]
    line = qc_text(attrs)
    source = attrs["planes"][0]["calibration"]["source"]
    assert line.startswith(f"calibration {source}")
    assert "calibration-auto" in line and "whole-field" in line
    assert np.isfinite(attrs["planes"][0]["fraction_identifiable"])
    assert qc_text({}) == "no run record in this store"
    assert qc_text({"planes": [{"calibration": {"source": "user"}}]}).startswith(
        "calibration user; flags:")


def test_qc_line_says_when_the_image_contradicts_the_calibration():
    check = {"checked": True, "contradicted": True, "preferred_ratio": 1.24}
    rec = {"calibration": {"mode": "user", "source": "user", "check": check}}
    line = qc_text({"planes": [rec]})
    assert "contradicted by the image (heterochromatin/chromatin ratio +24%)" in line
    assert "flags: calibration-contradicted" in line
    check["applied"] = True
    assert "+24%, applied)" in qc_text({"planes": [rec]})
    check["contradicted"] = False
    assert "contradicted" not in qc_text({"planes": [rec]})


def test_qc_line_says_when_a_flat_field_was_divided_out():
    rec = {"calibration": {"mode": "user", "source": "user",
                           "flat_field": {"path": "/data/flat_488.tif", "dark_level": "user"}}}
    assert qc_text({"planes": [rec]}).startswith(
        "calibration user, flat-field corrected (flat_488.tif); flags:")
    del rec["calibration"]["flat_field"]
    assert "flat-field" not in qc_text({"planes": [rec]})


def test_qc_line_says_when_the_channels_were_registered():
    rec = {"calibration": {"mode": "user", "source": "user",
                           "registration": {"offset_um": [0.012, -0.004], "shift_px": [-0.6, 0.2]}}}
    assert qc_text({"planes": [rec]}).startswith(
        "calibration user, heterochromatin channel moved back by (+12.0, -4.0) nm; flags:")
    del rec["calibration"]["registration"]
    assert "moved back" not in qc_text({"planes": [rec]})
