"""Tidy tables from a store written by the in-process stages (no Prefect)."""

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.process import process_image
from pipeline.simulate import simulate_folder
from pipeline.summary import IMAGE_COLUMNS, OBJECT_COLUMNS, TILE_COLUMNS, summarize_store


def _simulated(root, kind: str, seed: int, **run):
    """A 96×96 single-channel simulated image and fast closed-form settings for it."""
    simulate_folder(root / "images", truth_dir=root / "truth", cases=[(kind, 1)],
                    shape=(96, 96), seed=seed)
    s = Settings(method="closed-form", estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"denoise": "none", "tile_px": 32, "overlap_px": 8, **run})
    return root / "images" / f"{kind}_1ch_s{seed}.tif", s


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    image, s = _simulated(root, "step", 4)
    m = process_image(image, root / "out", s)
    assert process_image(image, root / "out", s)["skipped"]
    return m["store"]


def test_tables_have_schema_units_and_provenance(store):
    t = summarize_store(store)
    assert list(t["images"].columns) == IMAGE_COLUMNS
    assert list(t["tiles"].columns) == TILE_COLUMNS
    assert list(t["nuclei"].columns) == list(t["domains"].columns) == OBJECT_COLUMNS
    img = t["images"].iloc[0]
    assert img["file"] == "step_1ch_s4.tif" and img["channel_model"] == "single-channel"
    assert img["calibration_source"] == "assumed-offset" and img["pixel_size_um"] == 0.02
    assert img["flat_field"] == ""  # no --flat-field
    assert img["channel_offset_um"] == ""  # no --channel-offset
    assert img["n_tiles"] == len(t["tiles"]) > 1
    assert 0 < img["fraction_identifiable"] <= 1 and np.isfinite(img["lambda_median"])
    nuc = t["nuclei"].iloc[0]
    assert nuc["area_um2"] == pytest.approx(96 * 96 * 0.02**2)
    assert (t["images"]["lambda_std_mean"] > 0).all()  # the closed form gives a std


def test_tile_flags_of_a_healthy_closed_form_run(store):
    tiles = summarize_store(store)["tiles"]
    assert not tiles["diverged"].any() and not tiles["retried"].any()
    assert (tiles["fallback"] == "none").all()
    assert (tiles["cf_nonfinite_px"] == 0).all() and (tiles["dropped_px"] == 0).all()


def test_diverged_tiles_reach_summary_tiles_csv(tmp_path):
    """A neural run whose every tile diverges twice (a learnable field with an absurd step)
    finishes, reports closed-form λ with no std, and says so in summary_tiles.csv; no
    identifiable pixel of the store holds a non-finite λ."""
    pytest.importorskip("torch")
    import pandas as pd

    from pipeline.io import open_result_store
    from pipeline.summary import write_summaries

    simulate_folder(tmp_path / "images", truth_dir=tmp_path / "truth", cases=[("lognormal", 2)],
                    shape=(64, 64), seed=4)
    s = Settings(method="neural", device="cpu",
                 estimator={"delta_um": 0.06, "window_um": 0.06},
                 uncertainty={"ensemble_size": 2},
                 neural={"pretrain_epochs": 2, "epochs": 2, "lr": 1e30},
                 run={"denoise": "none", "tile_px": 24, "overlap_px": 6, "segment": False})
    m = process_image(tmp_path / "images" / "lognormal_2ch_s4.tif", tmp_path / "out", s)
    write_summaries([summarize_store(m["store"])], tmp_path / "out")
    tiles = pd.read_csv(tmp_path / "out" / "summary_tiles.csv")
    assert list(tiles.columns) == TILE_COLUMNS and len(tiles) > 1
    assert tiles["diverged"].all() and tiles["retried"].all()
    assert (tiles["fallback"] == "closed-form").all()
    res = open_result_store(m["store"])
    rates, ok = np.asarray(res["rates"]), np.asarray(res["labels"]["identifiable"]) > 0
    assert ok.any() and np.isfinite(rates[0][ok]).all()
    assert np.isnan(rates[1]).all()  # fallback tiles: no uncertainty, reported as NaN


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """A closed-form store of a simulated field with four user nuclei (one on the border).
    Calibrated by the percentile rule (``auto``), whose out-of-range fields leave some nuclei
    partly identifiable: the comparison below needs such nuclei."""
    import tifffile

    root = tmp_path_factory.mktemp("labelled")
    image, s = _simulated(root, "lognormal", 5, nuclei_dir=str(root / "labels"))
    s = s.model_copy(update={"calibration": "auto"})
    labels = np.zeros((96, 96), np.uint16)
    labels[8:40, 6:38], labels[50:90, 10:30], labels[20:70, 50:80] = 3, 7, 12
    labels[80:96, 60:96] = 15  # cut off by the border
    (root / "labels").mkdir()
    tifffile.imwrite(root / "labels" / image.name, labels)
    return process_image(image, root / "out", s)["store"]


def test_run_csv_and_viewer_export_give_identical_numbers(labelled_store, tmp_path):
    """summary_nuclei.csv (the run) and the napari export (the viewer, showing identifiable
    pixels) of the same store: the same columns hold the same numbers, written the same."""
    import pandas as pd

    from pipeline.io import open_result_store
    from pipeline.summary import OBJECT_STATS, write_summaries
    from plugins.summary import label_summaries, visible_mask, write_summaries_csv

    write_summaries([summarize_store(labelled_store)], tmp_path)
    run = pd.read_csv(tmp_path / "summary_nuclei.csv", dtype=str)
    res = open_result_store(labelled_store)
    lam, std = np.asarray(res["rates"])
    nuclei, ident = (np.asarray(res["labels"][k]) for k in ("nuclei", "identifiable"))
    rows = label_summaries(lam, nuclei, visible_mask(lam, std, ident), std=std,
                           identifiable=ident, pixel_size_um=res["pixel_size_um"])
    view = pd.read_csv(write_summaries_csv(rows, tmp_path / "view.csv"), dtype=str)

    shared = [c for c in OBJECT_STATS if c != "fraction_counted"]
    assert set(shared) <= set(run.columns) and set(shared) <= set(view.columns)
    assert list(run["label"]) == ["3", "7", "12", "15"]
    pd.testing.assert_frame_equal(run[shared], view[shared])
    # the comparison has teeth: partly identifiable nuclei, a spread, the cut-off nucleus
    num = run[shared].astype(float)
    assert ((num["fraction_identifiable"] > 0) & (num["fraction_identifiable"] < 1)).any()
    assert (num["lambda_sd"] > 0).sum() == 2 and num["lambda_sd"].isna().sum() == 2  # none shown
    assert list(run["touches_border"]) == ["False", "False", "False", "True"]
    assert list(num["n_pixels"]) == [32 * 32, 40 * 20, 50 * 30, 16 * 36]
    # the definitions: sample sd (ddof 1) and the IQR over the identifiable pixels
    nuc = (nuclei == 3) & (ident > 0)
    v = lam[nuc].astype(np.float64)
    q1, q3 = np.percentile(v, [25, 75])
    got = num.set_index(run["label"]).loc["3"]
    assert got["lambda_sd"] == pytest.approx(v.std(ddof=1), rel=1e-5)
    assert got["lambda_iqr"] == pytest.approx(q3 - q1, rel=1e-5)
    assert got["lambda_std_mean"] == pytest.approx(std[nuc].astype(np.float64).mean(), rel=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 101, 5000])
def test_lambda_stats_equal_numpy_in_float64(n, monkeypatch):
    """The per-object λ statistics, computed without a float64 copy (quantiles by partition,
    moments a block at a time), equal numpy's on the float64 values: the quantiles exactly."""
    from pipeline import object_table as summary

    monkeypatch.setattr(summary, "_BLOCK", 64)  # several blocks even for small objects
    rng = np.random.default_rng(n)
    img = rng.lognormal(size=(n, 3)).astype(np.float32)
    img[::4, 1] = np.nan
    mask = rng.random((n, 3)) < 0.8
    v = img[mask].astype(np.float64)
    v = v[np.isfinite(v)]
    got = summary._lambda_stats(mask, img)
    if not v.size:
        assert got[4] == 0 and np.isnan(got[:4]).all()
        return
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    assert got[0] == med and got[1] == q3 - q1 and got[4] == v.size
    np.testing.assert_allclose(got[2], v.mean(), rtol=1e-12)
    if v.size > 1:
        np.testing.assert_allclose(got[3], v.std(ddof=1), rtol=1e-10)
    else:
        assert np.isnan(got[3])
