"""The run widget's engine: settings from widget fields and the run as events, no GUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings
from plugins.runner import _ENSEMBLE_NAMES, _TILE_NAMES, build_settings, default_out_dir, run_folder

CAL = "100:0.00112801"  # as in conftest.py


def test_build_settings_maps_fields_and_quotes_bad_values(tmp_path: Path) -> None:
    settings, notes = build_settings(method="closed-form", device="cpu", calibration=CAL)
    assert settings.device == "cpu" and settings.calibration[0].offset == 100.0 and not notes
    assert build_settings(calibration="auto")[0].calibration == "auto"
    with pytest.raises(ValueError, match="abc"):
        build_settings(calibration="abc")
    with pytest.raises(ValueError, match="nope.toml"):
        build_settings(config=tmp_path / "nope.toml")
    settings, notes = build_settings(ensemble_size=8, tile_size_px=128)
    dumped = settings.model_dump()
    nested = [dumped] + [v for v in dumped.values() if isinstance(v, dict)]

    def applied(names: tuple[str, ...], value: int) -> bool:
        return any(d.get(n) == value for d in nested for n in names)

    for label, names, value in (("ensemble size", _ENSEMBLE_NAMES, 8),
                                ("tile size", _TILE_NAMES, 128)):
        assert applied(names, value) != any(label in n for n in notes), (label, notes)


def test_config_file_is_read_and_fields_override(fixed_bandwidth_toml: Path) -> None:
    settings, _ = build_settings(device="cpu", config=fixed_bandwidth_toml)
    assert settings.estimator.delta_um == 0.14 and settings.device == "cpu"


def test_run_folder_events_and_record(pipeline_results: Path) -> None:
    record = json.loads((pipeline_results / "run.json").read_text())
    assert len(record["images"]) == 1 and not record["failed"] and not record["cancelled"]
    assert (pipeline_results / "smooth_1ch_s0.ome.zarr").is_dir()


def test_run_folder_names_failures_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.tif").write_bytes(b"junk")
    events = list(run_folder(folder, tmp_path / "out", Settings()))
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "image", "failed", "finished"]
    assert "bad.tif" in events[2]["reason"] and events[-1]["failed"][0]["image"].endswith("bad.tif")


def test_run_folder_cancel_leaves_no_partial_store(tiny_tiffs: Path, tmp_path: Path) -> None:
    events = list(run_folder(tiny_tiffs, tmp_path / "out", Settings(), should_stop=lambda: True))
    assert events[-1]["cancelled"] and events[-1]["stores"] == []
    assert not list((tmp_path / "out").glob("*.ome.zarr"))
    assert json.loads((tmp_path / "out" / "run.json").read_text())["cancelled"]


def test_default_out_dir() -> None:
    assert default_out_dir("/data/images") == Path("/data/images_results")
