"""Single hot and dead pixels replaced before calibration (pipeline.defect_pixels): what the
test finds and what it leaves alone (camera noise, sparse single-molecule renderings), the
too-many guard, the record and flag, and what it does to λ on a small stress case."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile

from pipeline.config import Settings
from pipeline.defect_pixels import MAX_FRACTION, defect_pixels_replaced
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

SPECS = {s.name: s for s in STRESS_SPECS}
SEED = 5  # neither a tuning nor a held-out test seed of the stress suite


def _planted(image, fraction, excess, seed=0):
    """``image`` with hot (``excess`` ADU) or dead (``None``) pixels, as the benchmark plants
    them, and their mask."""
    from benchmarks.hot_pixels import with_defects

    return with_defects(image, fraction, excess, np.random.default_rng(seed))


@pytest.mark.parametrize("name", ["cam_smooth_1ch", "cam_lognormal_2ch", "nuc_cam_smooth_1ch"])
def test_planted_hot_and_dead_pixels_are_found_and_nothing_else_changes(name):
    """0.1 % hot (+2000 ADU) and, separately, dead (0) pixels on camera images: at least 95 %
    of the planted pixels are replaced (a dead pixel on a nuclear edge, where the edge's
    structure widens the noise scale of its intensity, can be missed), by values near the
    clean ones; every other pixel keeps its exact value; the input array is not modified."""
    clean = make_stress_case(SPECS[name], SEED).image
    for excess in (2000.0, None):
        image, bad = _planted(clean, 1e-3, excess)
        keep = image.copy()
        fixed, rec = defect_pixels_replaced(image)
        assert np.array_equal(image, keep)
        changed = (fixed != image).any(axis=0)
        assert not (changed & ~bad).any()
        assert changed.sum() >= 0.95 * bad.sum(), (excess, int(changed.sum()), int(bad.sum()))
        assert rec["pixels"] == (fixed != image).sum()
        assert all(ch["replaced"] for ch in rec["channels"])
        diff = np.abs(fixed.astype(float) - clean)[:, changed]
        noise = np.sqrt(clean.astype(float).mean())  # Poisson, in ADU at unit gain or more
        assert np.median(diff) < 2 * noise and diff.max() < 8 * noise, (excess, diff.max())


@pytest.mark.parametrize("name,change", [
    ("cam_smooth_2ch_px15", {}),   # no blur at all: the sharpest camera image of the suite
    ("cam_smooth_1ch_dim", {}),
    ("storm_step_1ch_px30", {}),   # 10 nm precision on 30 nm pixels: one pixel per molecule
    ("storm_step_1ch_px30", {"locs_per_px": 2}),
    ("nuc_storm_lognormal_2ch", {"locs_per_px": 2, "precision_nm": 10, "pixel_size_um": 0.03}),
    ("nuc_storm_smooth_1ch", {}),
])
def test_clean_camera_images_and_sparse_renderings_are_left_alone(name, change):
    """No pixel is replaced on clean images, among them sparse STORM renderings whose single
    localisations are single-pixel spikes in a dark background."""
    image = make_stress_case(dataclasses.replace(SPECS[name], **change), SEED).image
    fixed, rec = defect_pixels_replaced(image)
    assert rec["pixels"] == 0 and fixed is image, rec


def test_too_many_spikes_are_content_not_defects():
    """Spikes on more than MAX_FRACTION of the pixels (a sparse rendering of single
    molecules, here drawn directly) are not replaced, and the record says so."""
    from pipeline.defect_pixels import defect_statement

    rng = np.random.default_rng(1)
    image = (100 + rng.normal(0, 2, (1, 128, 128))).round()
    spikes = rng.random((128, 128)) < 5 * MAX_FRACTION
    image[0, spikes] += 300
    image = image.astype(np.uint16)
    fixed, rec = defect_pixels_replaced(image)
    assert fixed is image and rec["pixels"] == 0
    assert rec["channels"][0]["fraction"] > MAX_FRACTION
    assert not rec["channels"][0]["replaced"]
    assert "too many for defects" in defect_statement(rec)
    off, rec_off = defect_pixels_replaced(image, enabled=False)
    assert off is image and rec_off["checked"] is False


def test_hot_pixels_no_longer_wreck_lambda():
    """A small camera case with 0.1 % hot pixels (+2000 ADU): with ``--defect-pixels off`` r
    falls far below the clean fit's (this is what the option guards); with the default it is
    the clean fit's to 0.005, and the coverage of the 90 % interval stays in range."""
    from benchmarks.stress import evaluation_region, fit_scored

    case = make_stress_case(SPECS["cam_smooth_1ch"], SEED)
    region = evaluation_region(case)
    image, _ = _planted(case.image, 1e-3, 2000.0)
    clean = fit_scored(case.image, case, region)
    off = fit_scored(image, case, region, defect_pixels="off")
    fixed = fit_scored(image, case, region)
    assert off["r"] < clean["r"] - 0.2, (off, clean)
    assert abs(fixed["r"] - clean["r"]) < 0.005, (fixed, clean)
    assert 0.85 <= fixed["coverage"] <= 0.95, fixed


def test_a_run_records_and_flags_the_replaced_pixels(tmp_path):
    """Through the run's stages on a real TIFF with three hot pixels: the plane's calibration
    record counts them, the image row is flagged ``defect-pixels`` and the viewer's QC line
    says so; the input file is not modified. ``--defect-pixels off``: no record of
    replacement, no flag."""
    from pipeline.io import open_result_store
    from pipeline.process import process_image
    from pipeline.summary import summarize_store
    from plugins.inspect_data import qc_text

    rng = np.random.default_rng(2)
    img = 100 + rng.poisson(400, (96, 96))
    for y, x in ((10, 20), (50, 60), (80, 15)):
        img[y, x] += 3000
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "hot.tif"
    tifffile.imwrite(path, img.astype(np.uint16), imagej=True,
                     resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    before = path.read_bytes()
    for mode, want in (("replace", 3), ("off", 0)):
        s = Settings(method="closed-form", estimator={"delta_um": 0.06, "window_um": 0.06},
                     calibration=({"offset": 100, "scale": 1e-3},), defect_pixels=mode,
                     run={"denoise": "none", "segment": False})
        m = process_image(path, tmp_path / f"out_{mode}", s)
        attrs = open_result_store(m["store"])["attrs"]
        rec = attrs["planes"][0]["calibration"]["defect_pixels"]
        assert rec["pixels"] == want and rec["checked"] == (mode == "replace")
        flags = summarize_store(m["store"])["images"]["flags"].iloc[0].split(";")
        assert ("defect-pixels" in flags) == bool(want), flags
        assert ("3 defect pixel(s) replaced" in qc_text(attrs)) == bool(want)
    assert path.read_bytes() == before


def test_a_real_widefield_image_has_nothing_replaced():
    """The real widefield field of nuclei in tests/data (8-bit range, dark background, sharp
    nuclear edges): no pixel passes the test."""
    from pathlib import Path

    image = tifffile.imread(Path(__file__).parent / "data" / "dsb2018_nuclei.tif")[None]
    fixed, rec = defect_pixels_replaced(image)
    assert rec["pixels"] == 0 and rec["channels"][0]["candidates"] == 0 and fixed is image
