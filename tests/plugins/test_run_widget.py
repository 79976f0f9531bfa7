"""The run widget inside a real napari viewer (run under ``xvfb-run -a``: needs a display):
the Prefect flow, cancel, errors, refusals, and its fields from the settings model.

Skipped cleanly when napari (the ``napari`` extra) or a display is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.napari  # skipped without a display (conftest.py)

CAL = "100:0.00112801"


@pytest.fixture
def notifications():
    """Messages napari shows (info, warnings, errors) while the test runs."""
    from napari.utils.notifications import notification_manager

    got: list = []

    def keep(notification) -> None:
        got.append(f"{notification.severity}: {notification.message}")

    notification_manager.notification_ready.connect(keep)
    yield got
    notification_manager.notification_ready.disconnect(keep)


@pytest.fixture
def run_widget(make_napari_viewer, prefect_api: str, tiny_tiffs: Path,
               fixed_bandwidth_toml: Path, tmp_path: Path):
    """The run widget in a viewer, set up for :func:`tiny_tiffs` (fixed bandwidths: fast)."""
    from plugins.run_widget import RunWidget

    viewer = make_napari_viewer()
    widget = RunWidget(viewer)
    viewer.window.add_dock_widget(widget, name="run")
    widget.folder.value = tiny_tiffs
    widget.out.value = tmp_path / "out"
    widget.set_calibration(CAL)
    widget.config.value = fixed_bandwidth_toml
    widget.device.value = "cpu"
    return viewer, widget


def _ended(widget) -> bool:
    return widget.worker is not None and widget.run_button.enabled


def test_run_widget_runs_the_flow_and_opens_results(run_widget, qtbot, tmp_path: Path,
                                                    notifications: list) -> None:
    viewer, widget = run_widget
    seen: list[tuple[str, str]] = []  # (event, status line after the widget handled it)
    handle = widget._on_event

    def spy(event: dict) -> None:
        handle(event)
        seen.append((event["event"], widget.status.value))

    widget._on_event = spy  # start() connects the worker to it
    assert widget.start() is not None and not widget.run_button.enabled
    assert widget.cancel_button.enabled
    qtbot.waitUntil(lambda: _ended(widget), timeout=120000)
    result = widget.last_result
    assert result["stores"] and not result["failed"] and not result["cancelled"]
    # the flow's "start" follows at once and may be handled while "starting" still is
    assert {e for e, _ in seen[:2]} == {"starting", "start"}
    assert ("stage", "smooth_1ch_s0.tif: fit") in seen  # stage events from the flow's tasks
    assert ("done", "1/1: smooth_1ch_s0.tif done") in seen
    assert widget.bar.value == widget.bar.max == 1 and widget.status.value.startswith("done")
    assert not widget.cancel_button.enabled
    lam = viewer.layers["smooth_1ch_s0 λ mean"]
    assert tuple(lam.scale) == (0.02, 0.02)
    record = json.loads((tmp_path / "out" / "run.json").read_text())  # the flow's record
    assert record["images"][0]["store"] == result["stores"][0] and "code_version" in record
    assert (tmp_path / "out" / "summary_nuclei.csv").is_file()
    assert any("done: 1 store(s)" in n for n in notifications)


def test_run_widget_cancel_at_once(run_widget, qtbot, tmp_path: Path) -> None:
    _, widget = run_widget
    assert widget.start() is not None
    widget.cancel()
    assert widget.status.value == "cancelling…"
    qtbot.waitUntil(lambda: _ended(widget), timeout=120000)
    assert widget.last_result["cancelled"] and widget.last_result["stores"] == []
    assert widget.status.value.startswith("cancelled")
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert not list((tmp_path / "out").glob("*.ome.zarr"))
    assert not (tmp_path / "out" / "run.json").exists()


def test_run_widget_errors_are_readable_notifications(run_widget, qtbot, tmp_path: Path,
                                                      notifications: list) -> None:
    _, widget = run_widget
    images = Path(widget.folder.value)
    widget.set_calibration("abc")  # bad settings: refused before anything runs
    assert widget.calibration.value == "OFFSET:SCALE" and widget.pairs.value == "abc"
    assert widget.start() is None and any("abc" in n for n in notifications)
    widget.pairs.value = ""  # pairs chosen but none typed: refused, not the default silently
    assert widget.start() is None and "type the calibration" in notifications[-1]
    widget.calibration.value = "auto"
    widget.channels.value = "dna,heterochromatin"  # --channels as typed: checked too
    assert widget.start() is None and "'dna'" in notifications[-1]
    widget.channels.value = ""

    empty = tmp_path / "empty"
    empty.mkdir()
    widget.folder.value = empty
    assert widget.start() is not None
    qtbot.waitUntil(lambda: _ended(widget), timeout=60000)
    assert widget.status.value.startswith("failed") and "no .tif" in widget.status.value

    widget.folder.value = images  # refused by the flow itself, after "starting"
    widget.out.value = images / "inside"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: _ended(widget), timeout=60000)
    assert widget.status.value.startswith("failed") and "inside the input" in widget.status.value
    widget._on_event({"event": "starting", "total": 1, "images": []})  # handled late
    assert widget.status.value.startswith("failed") and "inside the input" in widget.status.value

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.tif").write_bytes(b"not a tiff")
    widget.folder.value = broken
    widget.out.value = tmp_path / "broken_out"
    notifications.clear()
    assert widget.start() is not None
    qtbot.waitUntil(lambda: _ended(widget), timeout=120000)
    assert widget.last_result["failed"] and widget.last_result["stores"] == []
    assert "1 failed (bad.tif)" in widget.status.value
    # "starting" handled after the end (napari's progress() can run the later events inside
    # that handler): the final line stays
    widget._on_event({"event": "starting", "total": 1, "images": []})
    assert "1 failed (bad.tif)" in widget.status.value
    warning = [n for n in notifications if n.startswith("warning")]
    assert len(warning) == 1 and "bad.tif failed:" in warning[0], notifications
    assert "Traceback" not in warning[0]


def test_run_widget_refuses_other_settings_unless_overwrite(
        run_widget, qtbot, tmp_path: Path, pipeline_results: Path, notifications: list) -> None:
    """A results folder made with other settings: refused without the overwrite box (the
    status line names the setting, its value here and the recorded one; nothing is written),
    replaced with it."""
    import hashlib
    import shutil

    import zarr

    def hashes(folder: Path) -> dict:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    _, widget = run_widget
    out = tmp_path / "out"  # the fixture's results folder, holding a run at the default tile
    shutil.copytree(pipeline_results, out)
    before = hashes(out)
    widget.tile.value = 128
    assert widget.start() is not None
    qtbot.waitUntil(lambda: _ended(widget), timeout=60000)
    why = (f"{out}: it holds results made with other settings: tile size (px) (run.tile_px) "
           "is 128 here but 256 in run.json, smooth_1ch_s0.ome.zarr. Tick “overwrite” to "
           "replace them, or choose another results folder.")
    assert widget.status.value == f"refused: {why}"
    assert f"error: chromarate run refused: {why}" in notifications
    assert widget.last_result is None and hashes(out) == before

    widget.overwrite.value = True
    assert widget.start() is not None
    qtbot.waitUntil(lambda: _ended(widget), timeout=120000)
    assert widget.status.value.startswith("done: 1 store(s), 0 failed"), widget.status.value
    store = widget.last_result["stores"][0]
    assert zarr.open_group(store, mode="r").attrs["chromarate"]["settings"]["run"]["tile_px"] == 128
    assert json.loads((out / "run.json").read_text())["settings"]["run"]["tile_px"] == 128


def test_run_widget_shows_the_real_defaults_and_a_settings_files_values(
        make_napari_viewer, tmp_path: Path) -> None:
    from pipeline.config import Settings
    from plugins.run_widget import RunWidget
    from plugins.runner import ENSEMBLE_SECTION, build_settings

    widget = RunWidget(make_napari_viewer())
    default = Settings()
    assert widget.method.value == default.method and widget.device.value == default.device
    assert widget.ensemble.value == getattr(default, ENSEMBLE_SECTION).ensemble_size > 0
    assert widget.tile.value == default.run.tile_px > 0
    assert widget.calibration.value == default.calibration == widget.calibration_value
    assert build_settings(calibration=widget.calibration_value).calibration == default.calibration
    assert not widget.pairs.enabled and not widget.overwrite.value
    path = tmp_path / "s.toml"
    path.write_text(f"[{ENSEMBLE_SECTION}]\nensemble_size = 8\n[run]\ntile_px = 128\n")
    widget.config.value = path
    assert widget.ensemble.value == 8 and widget.tile.value == 128
    assert widget.method.value == default.method  # not in the file: left alone
    path.write_text('calibration = [{offset = 100, scale = 0.5}]\n')
    widget.config.value = tmp_path / "none.toml"
    widget.config.value = path
    assert widget.calibration.value == "OFFSET:SCALE" and widget.pairs.value == "100:0.5"
    assert widget.pairs.enabled and widget.calibration_value == "100:0.5"
    assert widget.channels.value == "" and widget.channels.tooltip == \
        Settings.model_fields["channels"].description
    path.write_text('channels = ["chromatin", "ignore", "heterochromatin"]\n')
    widget.config.value = tmp_path / "none.toml"
    widget.config.value = path
    assert widget.channels.value == "chromatin,ignore,heterochromatin"


def _combo(widget) -> dict:
    """A drop-down's values and the labels it shows them by."""
    return {widget.native.itemData(i): widget.native.itemText(i)
            for i in range(widget.native.count())}


def _check_fields(widget, model) -> None:
    """Every settings field of the run widget shows ``model``'s default, its choices (the
    Literal values, default first and marked), its lower bound and its description."""
    import typing

    def field(*path):
        m = model
        for name in path[:-1]:
            m = m.model_fields[name].annotation
        return m.model_fields[path[-1]]

    def literal(annotation):
        if typing.get_origin(annotation) is typing.Literal:
            return list(typing.get_args(annotation))
        return [v for arg in typing.get_args(annotation) for v in literal(arg)]

    def ge(info):
        return next(m.ge for m in info.metadata if getattr(m, "ge", None) is not None)

    from plugins.runner import ENSEMBLE_SECTION

    for combo, info, extra in ((widget.method, field("method"), []),
                               (widget.device, field("device"), []),
                               (widget.calibration, field("calibration"), ["OFFSET:SCALE"])):
        default = info.get_default()
        assert combo.value == default
        shown = _combo(combo)
        assert list(shown) == [default] + [c for c in literal(info.annotation)
                                           if c != default] + extra
        assert shown[default] == f"{default} (default)"
        assert (combo.tooltip or "") == (info.description or "")
    ensemble, tile = field(ENSEMBLE_SECTION, "ensemble_size"), field("run", "tile_px")
    assert widget.ensemble.value == ensemble.get_default() and widget.ensemble.min == ge(ensemble)
    assert widget.ensemble.tooltip.startswith(ensemble.description)
    assert widget.tile.value == tile.get_default() and widget.tile.min == ge(tile)
    assert widget.tile.tooltip == tile.description


def test_run_widget_fields_follow_the_settings_model(make_napari_viewer, monkeypatch) -> None:
    """The widget's defaults, choices, bounds and help are the settings model's: a changed
    default, a new Literal value or a new description in pipeline.config reaches the widget
    (here a changed model stands in for an edited pipeline/config.py)."""
    from typing import Literal

    from pydantic import Field, create_model

    import plugins.run_fields
    from pipeline.config import Calibration, RunSettings, Settings, UncertaintySettings
    from plugins.run_widget import RunWidget
    from plugins.runner import ENSEMBLE_SECTION

    viewer = make_napari_viewer()
    _check_fields(RunWidget(viewer), Settings)

    section = create_model("Section", __base__=UncertaintySettings, ensemble_size=(
        int, Field(6, ge=4, description="changed: members")))
    run = create_model("Run", __base__=RunSettings, tile_px=(
        int, Field(512, ge=32, description="changed: tile side")))
    changed = create_model(
        "Changed", __base__=Settings,
        method=(Literal["closed-form", "neural", "other"], Field("neural", description="changed")),
        device=(Literal["auto", "cpu", "cuda", "mps"], "cpu"),
        calibration=(tuple[Calibration, ...] | Literal["auto", "image", "flat"], "auto"),
        run=(run, run()), **{ENSEMBLE_SECTION: (section, section())},
    )
    monkeypatch.setattr(plugins.run_fields, "Settings", changed)
    widget = RunWidget(viewer)
    _check_fields(widget, changed)
    assert widget.method.value == "neural" and "mps" in _combo(widget.device)
    assert widget.ensemble.value == 6 and widget.tile.min == 32
