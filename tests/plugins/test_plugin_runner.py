"""The run widget's engine without a GUI: settings from widget fields, and the real Prefect flow
(on the session's test API) as a stream of events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.config import Settings
from plugins.runner import (
    ENSEMBLE_SECTION,
    build_settings,
    config_fields,
    default_out_dir,
    run_folder,
)

CAL = "100:0.00112801"  # as in conftest.py


def test_build_settings_maps_fields_and_quotes_bad_values(tmp_path: Path) -> None:
    settings = build_settings(method="closed-form", device="cpu", calibration=CAL)
    assert settings.device == "cpu" and settings.calibration[0].offset == 100.0
    assert build_settings(calibration="auto").calibration == "auto"
    assert build_settings().calibration == Settings().calibration  # the one default
    with pytest.raises(ValueError, match="abc"):
        build_settings(calibration="abc")
    with pytest.raises(ValueError, match="nope.toml"):
        build_settings(config=tmp_path / "nope.toml")
    settings = build_settings(method="neural", ensemble_size=8, tile_size_px=128)
    assert getattr(settings, ENSEMBLE_SECTION).ensemble_size == 8
    assert settings.run.tile_px == 128
    default = Settings()
    assert build_settings(ensemble_size=0, tile_size_px=None).run == default.run
    with pytest.raises(ValueError, match="even"):
        build_settings(ensemble_size=3)
    with pytest.raises(ValueError, match="tile_px"):
        build_settings(tile_size_px=8)
    assert build_settings(channels="chromatin, heterochromatin,ignore").channels == (
        "chromatin", "heterochromatin", "ignore")
    assert build_settings(channels=" ").channels is None
    with pytest.raises(ValueError, match="dapi"):
        build_settings(channels="dapi,heterochromatin")


def test_config_file_is_read_and_fields_override(fixed_bandwidth_toml: Path) -> None:
    settings = build_settings(device="cpu", tile_size_px=64, config=fixed_bandwidth_toml)
    assert settings.estimator.delta_um == 0.14 and settings.device == "cpu"
    assert settings.run.tile_px == 64


def test_config_fields_are_what_the_file_sets(fixed_bandwidth_toml: Path, tmp_path: Path
                                              ) -> None:
    """The run widget shows a chosen file's values; a file that sets none of its fields
    leaves them alone."""
    assert config_fields(fixed_bandwidth_toml) == {} and config_fields(None) == {}
    path = tmp_path / "s.toml"
    path.write_text('method = "neural"\ndevice = "cpu"\n'
                    'calibration = [{offset = 100, scale = 0.00112801}]\n'
                    f"[{ENSEMBLE_SECTION}]\nensemble_size = 6\n[run]\ntile_px = 128\n")
    assert config_fields(path) == {"method": "neural", "device": "cpu", "ensemble_size": 6,
                                   "tile_size_px": 128, "calibration": CAL}
    settings = build_settings(**config_fields(path), config=path)  # the widget's round trip
    assert settings == build_settings(method="neural", device="cpu", config=path)
    path.write_text('channels = ["ignore", "heterochromatin", "chromatin"]\n')
    assert config_fields(path) == {"channels": "ignore,heterochromatin,chromatin"}
    path.write_text(f"[{ENSEMBLE_SECTION}]\nensemble_size = 3\n")
    with pytest.raises(ValueError, match="even"):
        config_fields(path)


def test_run_folder_runs_the_flow(pipeline_run: tuple[Path, list[dict]]) -> None:
    """What the CLI writes (run.json from the flow, CSV summaries), and the events in order."""
    out, events = pipeline_run
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["starting", "start"] and kinds[-2:] == ["done", "finished"]
    # images are inspected before Prefect starts (no ingest task); then the tasks' stages
    assert {"denoise", "fit", "segment"} <= {e["stage"] for e in events
                                             if e["event"] == "stage"}
    assert events[-2]["count"] == 1 and events[0]["total"] == 1
    record = json.loads((out / "run.json").read_text())
    assert {"code_version", "environment", "summaries", "seconds"} <= set(record)
    assert len(record["images"]) == 1 and not record["images"][0]["skipped"]
    assert not record["failed"] and record["settings"]["device"] == "cpu"
    assert events[-1]["record"]["code_version"] == record["code_version"]
    assert (out / "smooth_1ch_s0.ome.zarr").is_dir() and (out / "summary_images.csv").is_file()
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]  # the CLI's default


def test_prefect_is_imported_only_when_a_run_starts() -> None:
    """So that the CLI's Prefect defaults (read at import) can be set first."""
    code = ("import sys, plugins, plugins.runner, plugins.run_widget\n"
            "assert 'prefect' not in sys.modules and 'flows.flow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_folder_skips_finished_images(pipeline_run: tuple[Path, list[dict]],
                                          tiny_tiffs: Path) -> None:
    out, _ = pipeline_run
    store = out / "smooth_1ch_s0.ome.zarr" / "zarr.json"
    before = store.stat().st_mtime_ns
    settings = build_settings(calibration=CAL, config=out / "fast.toml", device="cpu")
    events = list(run_folder(tiny_tiffs, out, settings))
    assert [e["event"] for e in events if e["event"] != "stage"] == [
        "starting", "start", "skipped", "finished"]
    assert events[-1]["record"]["images"][0]["skipped"] and store.stat().st_mtime_ns == before


def test_run_folder_names_failures(prefect_api: str, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.tif").write_bytes(b"junk")
    events = list(run_folder(folder, tmp_path / "out", Settings()))
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and "bad.tif" in failed[0]["reason"]
    last = events[-1]
    assert last["event"] == "finished" and not last["cancelled"] and last["stores"] == []
    assert last["failed"][0]["image"].endswith("bad.tif")
    assert json.loads((tmp_path / "out" / "run.json").read_text())["failed"]


def test_run_folder_without_tiffs_fails_before_prefect(tmp_path: Path) -> None:
    from pipeline.io import InputError

    with pytest.raises(InputError, match="no .tif"):
        next(run_folder(tmp_path, tmp_path / "out", Settings()))


def test_run_folder_cancel_leaves_no_store(prefect_api: str, tiny_tiffs: Path,
                                           tmp_path: Path) -> None:
    events = list(run_folder(tiny_tiffs, tmp_path / "out", Settings(), should_stop=lambda: True))
    last = events[-1]
    assert last["event"] == "finished" and last["cancelled"] and last["record"] is None
    assert last["stores"] == [] and not list((tmp_path / "out").glob("*.ome.zarr"))
    assert not (tmp_path / "out" / "run.json").exists()


def test_closing_the_stream_stops_the_flow(prefect_api: str, tiny_tiffs: Path,
                                           tmp_path: Path) -> None:
    """A consumer that goes away (the widget's worker quit) cancels the flow and waits for it."""
    stream = run_folder(tiny_tiffs, tmp_path / "out", Settings())
    assert next(stream)["event"] == "starting"
    assert next(stream)["event"] == "start"
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "chromarate-flow"]
    assert not list((tmp_path / "out").glob("*.ome.zarr"))


def test_default_out_dir() -> None:
    assert default_out_dir("/data/images") == Path("/data/images_results")


def test_other_settings_are_named_in_plain_words(synthetic_results: Path, tiny_tiffs: Path,
                                                 tmp_path: Path) -> None:
    """A results folder made with other settings is refused before anything runs or is
    written, naming each differing setting (by the widget's label), this run's value and the
    recorded ones, and the way out (the overwrite box)."""
    from plugins.runner import OtherSettingsError, other_settings_text

    files = {p: p.stat().st_mtime_ns for p in synthetic_results.rglob("*")}
    text = other_settings_text(synthetic_results, Settings())  # stores hold 100:0.00112801
    assert text == ("it holds results made with other settings: calibration is image here but "
                    "100:0.00112801 in cell.ome.zarr, stack.ome.zarr")
    assert other_settings_text(synthetic_results, build_settings(calibration=CAL)) is None
    assert other_settings_text(tmp_path / "new", Settings()) is None
    recorded = tmp_path / "out"
    recorded.mkdir()
    (recorded / "run.json").write_text(json.dumps({"settings": build_settings(
        calibration=CAL, method="closed-form", ensemble_size=6, tile_size_px=128
    ).model_dump(mode="json")}))
    text = other_settings_text(recorded, build_settings(
        calibration=CAL, method="neural", ensemble_size=2, tile_size_px=64))
    assert "method is neural here but closed-form in run.json" in text
    assert f"ensemble size ({ENSEMBLE_SECTION}.ensemble_size) is 2 here but 6 in run.json" in text
    assert "tile size (px) (run.tile_px) is 64 here but 128 in run.json" in text
    assert "calibration" not in text and "seed" not in text  # equal: not named
    with pytest.raises(OtherSettingsError) as refused:
        next(run_folder(tiny_tiffs, synthetic_results, Settings()))
    assert str(refused.value) == (
        f"{synthetic_results}: it holds results made with other settings: calibration is image "
        "here but 100:0.00112801 in cell.ome.zarr, stack.ome.zarr. Tick “overwrite” to replace "
        "them, or choose another results folder.")
    assert {p: p.stat().st_mtime_ns for p in synthetic_results.rglob("*")} == files
