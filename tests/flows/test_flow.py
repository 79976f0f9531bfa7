"""The real flow (Prefect, dask, zarr, torch; no mocks) on a tiny synthetic folder."""

import json
import time

import numpy as np
import pandas as pd
import pytest
import zarr

from flows.flow import run
from pipeline.config import Settings
from pipeline.io import open_result_store
from pipeline.simulate import load_truth
from pipeline.summary import IMAGE_COLUMNS, OBJECT_COLUMNS, TILE_COLUMNS

STEMS = ("lognormal_2ch_s1", "smooth_1ch_s1", "step_1ch_s1")


def _settings(sim_folder, **run):
    cal = load_truth(sim_folder / "truth" / "smooth_1ch_s1.npz")["calibration"][0]
    return Settings(calibration=({"offset": cal.offset, "scale": cal.scale},),
                    run={"tile_px": 16, "overlap_px": 6, **run})


@pytest.fixture(scope="module")
def first_run(prefect_api, sim_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    t0 = time.perf_counter()
    record = run(sim_folder / "images", out, _settings(sim_folder))
    return out, record, time.perf_counter() - t0


def test_stores_validate_and_hold_every_layer(first_run):
    from ome_zarr_models.v05.image import Image

    out, record, _ = first_run
    assert record["failed"] == [] and len(record["images"]) == 3
    for stem in STEMS:
        store = out / f"{stem}.ome.zarr"
        root = zarr.open_group(store, mode="r")
        Image.from_zarr(root)
        for name in ("rates", "denoised", "fields"):
            Image.from_zarr(zarr.open_group(store / name, mode="r"))
        res = open_result_store(store)
        assert res["rates"].shape == (2, 128, 128) and res["rates"].dtype == np.float32
        # the default method (neural) gives a std wherever it gives a mean
        lam, std = np.asarray(res["rates"][0]), np.asarray(res["rates"][1])
        assert np.array_equal(np.isfinite(lam), np.isfinite(std)) and np.isfinite(lam).any()
        assert (std[np.isfinite(std)] > 0).all()
        assert res["n_levels"] >= 2
        assert set(res["labels"]) == {"identifiable", "nuclei", "domains"}
        assert res["images"]["fields"].shape == (2, 128, 128)
    assert not list((out / ".chromarate" / "work").iterdir())  # work folders removed


@pytest.mark.parametrize("stem", STEMS)
def test_lambda_correlates_with_truth(first_run, sim_folder, stem):
    out, _, _ = first_run
    lam = np.asarray(open_result_store(out / f"{stem}.ome.zarr")["rates"][0])
    truth = load_truth(sim_folder / "truth" / f"{stem}.npz")["lam"]
    ok = np.isfinite(lam)
    ok[:12], ok[-12:], ok[:, :12], ok[:, -12:] = False, False, False, False
    assert ok.mean() > 0.4
    # 128^2 is small for the estimator; measured r = 0.89-0.98 here
    assert np.corrcoef(lam[ok], truth[ok])[0, 1] > 0.75


def test_csv_schemas_and_run_json(first_run):
    out, record, _ = first_run
    images = pd.read_csv(out / "summary_images.csv")
    assert list(images.columns) == IMAGE_COLUMNS and len(images) == 3
    assert set(images["file"]) == {f"{s}.tif" for s in STEMS}
    assert (images["calibration_source"] == "user").all()
    assert images["lambda_median"].between(0.2, 5).all()
    tiles = pd.read_csv(out / "summary_tiles.csv")
    assert list(tiles.columns) == TILE_COLUMNS
    assert len(tiles) == images["n_tiles"].sum() and images["n_tiles"].min() > 1
    for name in ("nuclei", "domains"):
        df = pd.read_csv(out / f"summary_{name}.csv")
        assert list(df.columns) == OBJECT_COLUMNS
    assert len(pd.read_csv(out / "summary_nuclei.csv")) >= 3
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["settings"]["run"]["tile_px"] == 16 and run_json["seed"] == 0
    assert {"python", "packages"} <= set(run_json["environment"])
    assert set(run_json["images"][0]["timings_s"]) >= {"denoise", "fit", "segment"}


def test_second_run_skips_finished_images(first_run, sim_folder):
    out, _, _ = first_run
    before = {s: (out / f"{s}.ome.zarr" / "zarr.json").stat().st_mtime_ns for s in STEMS}
    record = run(sim_folder / "images", out, _settings(sim_folder))
    assert all(i["skipped"] for i in record["images"]) and record["failed"] == []
    after = {s: (out / f"{s}.ome.zarr" / "zarr.json").stat().st_mtime_ns for s in STEMS}
    assert before == after
    # a setting that changes results re-runs; one that does not (workers) would not
    assert len(pd.read_csv(out / "summary_images.csv")) == 3


@pytest.mark.slow  # a LocalCluster of 2 processes: ~50 s here, mostly worker imports
def test_dask_local_cluster(prefect_api, sim_folder, tmp_path):
    one = tmp_path / "in"
    one.mkdir()
    (one / "step_1ch_s1.tif").write_bytes((sim_folder / "images" / "step_1ch_s1.tif").read_bytes())
    record = run(one, tmp_path / "out", _settings(sim_folder, workers=2, denoise="none"))
    assert record["failed"] == [] and not record["images"][0]["skipped"]
    assert (tmp_path / "out" / "step_1ch_s1.ome.zarr").is_dir()


def test_timings_are_recorded_for_every_stage(first_run):
    """run.json gives each computed image the seconds of each stage, and they add up to no
    more than the run's own seconds (a record, not a speed check: speed is benchmarked)."""
    _, record, _ = first_run
    computed = [i for i in record["images"] if not i.get("skipped")]
    assert computed
    for image in computed:
        t = image["timings_s"]
        assert set(t) >= {"denoise", "fit", "segment", "assemble"}, t
        assert all(v >= 0 for v in t.values()), t
    total = sum(sum(i["timings_s"].values()) for i in computed)
    assert total <= record["seconds"] * record.get("workers", 1) + 1.0


def test_cancel_stops_a_running_fit(prefect_api, sim_folder, tmp_path):
    """Cancelling during a long neural fit stops it at its next epoch: its last progress event
    is an early epoch, nothing more comes once the flow has returned, and no store appears.
    (Before, cancel acted between stages only: the task runner waited for the fit to run all
    5000 epochs; measured with the stop request disabled, the last event was epoch 5000.)"""
    from flows.flow import RunCancelled
    from flows.tasks import set_progress_sink

    s = _settings(sim_folder, tile_px=64, overlap_px=8)
    s = s.model_copy(update={"method": "neural",
                             "neural": s.neural.model_copy(update={"pretrain_epochs": 0,
                                                                   "epochs": 5000})})
    events: list[dict] = []
    set_progress_sink(events.append)
    try:
        def fitting() -> bool:
            return sum(e.get("stage") == "neural" for e in events) >= 3

        with pytest.raises(RunCancelled):
            run(sim_folder / "images" / "smooth_1ch_s1.tif", tmp_path / "out", s, cancel=fitting)
        n = len(events)
        time.sleep(2.0)
        assert len(events) == n, events[n:][:5]
        last = [e for e in events if e.get("stage") == "neural"][-1]
        assert last["done"] < 100 and last["total"] == 5000
    finally:
        set_progress_sink(None)
    assert not list((tmp_path / "out").glob("*.ome.zarr"))


def test_hooks_report_each_image_and_cancel_between_images(prefect_api, sim_folder, tmp_path):
    """The widget's hooks: an event per image from the flow's loop; cancelling after the first
    image keeps its store, starts no other, and ends the flow run Cancelled (not Failed)."""
    from flows.cluster import make_task_runner
    from flows.flow import RunCancelled, run_flow

    settings = _settings(sim_folder)
    events = []

    def after_first() -> bool:
        return any(e["event"] == "done" for e in events)

    with pytest.raises(RunCancelled):
        run(sim_folder / "images", tmp_path / "out", settings, progress=events.append,
            cancel=after_first)
    assert events[0] == {"event": "start", "total": 3,
                         "images": [str(sim_folder / "images" / f"{s}.tif") for s in STEMS]}
    assert [e["event"] for e in events[1:]] == ["done"]
    assert events[1]["store"] == str(tmp_path / "out" / f"{STEMS[0]}.ome.zarr")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ome.zarr")) == [f"{STEMS[0]}.ome.zarr"]
    assert not (tmp_path / "out" / "run.json").exists()

    state = run_flow.with_options(task_runner=make_task_runner(settings.run))(
        str(sim_folder / "images"), str(tmp_path / "out"), settings, cancel=lambda: True,
        return_state=True)
    assert state.is_cancelled() and "cancelled by the user" in state.message
