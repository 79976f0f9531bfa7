"""The plugin inside a real napari viewer (run under ``xvfb-run -a``: needs a display).

Skipped cleanly when napari (the ``napari`` extra) or a display is missing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not (
    os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
):
    pytest.skip("viewer tests need a display: run pytest under xvfb-run -a",
                allow_module_level=True)

pytestmark = pytest.mark.napari

PX = 0.025  # as in conftest.py
CAL = "100:0.00112801"


def _screen_patch(viewer, shot: np.ndarray, y_um: float, x_um: float, r: int = 4) -> np.ndarray:
    """Mean RGB of the screenshot around the world point (y_um, x_um)."""
    cy, cx = viewer.camera.center[-2:]
    zoom = viewer.camera.zoom
    h, w = shot.shape[:2]
    row = int(round((y_um - cy) * zoom + h / 2))
    col = int(round((x_um - cx) * zoom + w / 2))
    return shot[row - r:row + r + 1, col - r:col + r + 1, :3].reshape(-1, 3).mean(0)


def test_reader_layers_and_overlay_screenshot(make_napari_viewer, synthetic_results: Path) -> None:
    from plugins.view import overlay_screenshot

    viewer = make_napari_viewer(show=True)
    viewer.open(str(synthetic_results / "cell.ome.zarr"), plugin="chromarate")
    names = [layer.name for layer in viewer.layers]
    assert names == ["cell raw heterochromatin", "cell λ mean", "cell λ std",
                     "cell identifiable", "cell nuclei"]
    lam = viewer.layers["cell λ mean"]
    assert tuple(lam.scale) == (PX, PX)
    assert [str(u) for u in lam.units] == ["micrometer", "micrometer"]
    assert lam.colormap.name == "magma" and lam.multiscale
    assert tuple(viewer.layers["cell nuclei"].scale) == (PX, PX)
    viewer.layers["cell nuclei"].visible = False

    lam.visible = False
    plain = overlay_screenshot(viewer)
    lam.visible = True
    shot = overlay_screenshot(viewer)
    assert shot.dtype == np.uint8 and shot.ndim == 3
    # λ = 1 (left half, the low contrast limit: magma's black) vs λ = 2 (right: pale yellow)
    left = _screen_patch(viewer, shot, 64 * PX, 20 * PX)
    right = _screen_patch(viewer, shot, 64 * PX, 76 * PX)
    grey = _screen_patch(viewer, plain, 64 * PX, 76 * PX)
    assert right.mean() > left.mean() + 80, (left, right)
    assert right[0] > right[2] + 20, right  # warm, not the grey of the raw image
    assert abs(grey[0] - grey[2]) < 3 and not np.allclose(grey, right, atol=10)
    changed = np.abs(shot.astype(int) - plain.astype(int)).sum(-1) > 30
    assert changed.mean() > 0.05  # the overlay covers a good part of the canvas


def test_inspect_widget_masks_reads_out_and_exports(
    make_napari_viewer, qtbot, synthetic_results: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from plugins.inspect_widget import InspectWidget
    from plugins.layers import store_layers
    from plugins.view import add_layer_data

    viewer = make_napari_viewer()
    add_layer_data(viewer, store_layers(synthetic_results / "cell.ome.zarr"))
    widget = InspectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="inspect")
    lam = viewer.layers["cell λ mean"]
    assert widget.rates.value is lam and widget.image.value.name == "cell raw heterochromatin"
    assert lam.colorbar.visible and "dimensionless" in widget.legend.value
    assert widget.colorbar_title == "λ (unitless)"

    # λ std replaces λ on screen (never blended), with its own colour bar and title
    std = viewer.layers["cell λ std"]
    assert not std.visible and widget.show.enabled
    widget.show.value = "λ std"
    assert std.visible and std.colorbar.visible and std.blending == "opaque"
    assert not lam.visible and not lam.colorbar.visible
    assert widget.colorbar_title == "λ std (unitless)"
    assert std.colormap.name != lam.colormap.name
    assert std.contrast_limits == pytest.approx((0.1, 0.9), abs=0.01)
    widget.show.value = "λ mean"
    assert lam.visible and not std.visible and widget.colorbar_title == "λ (unitless)"
    assert viewer.layers["cell nuclei"].visible and viewer.layers["cell nuclei"].contour == 2

    # unidentifiable corner hidden in λ, shown faded beneath
    faded = viewer.layers["cell λ mean (faded)"]
    assert np.isnan(np.asarray(lam.data[0])[-1, 0]) and faded.opacity < lam.opacity
    widget.std_max.value = 0.5
    widget.use_std.value = True
    level0 = np.asarray(lam.data[0])
    assert np.isnan(level0[:16]).all() and np.isfinite(level0[20:100]).all()
    assert (np.asarray(faded.data[0])[:16, 20] == 1.0).all()
    assert np.isnan(np.asarray(lam.data[1])[:8]).all()  # every pyramid level is masked
    widget.mode.value = "hide"
    assert "cell λ mean (faded)" not in viewer.layers

    qtbot.waitUntil(lambda: len(widget.table) == 2, timeout=10000)
    one = widget.row_for(1)
    assert one["fraction_visible"] == pytest.approx(44 / 50) and one["lambda_mean"] == 1.0
    viewer.cursor.position = (90 * PX, 70 * PX)  # inside nucleus 2
    assert "nucleus 2" in widget.cursor.value and "λ mean 2.000" in widget.cursor.value
    viewer.layers["cell nuclei"].selected_label = 1
    assert "nucleus 1" in widget.selection.value

    out = widget.export_csv(tmp_path / "view.csv")
    table = pd.read_csv(out)
    assert list(table["label"]) == [1, 2] and set(table["std_max"]) == {0.5}
    assert list(table["lambda_mean"]) == [1.0, 2.0] and set(table["file"]) == {"cell.tif"}


def test_inspect_widget_summarises_a_drawn_selection(
    make_napari_viewer, qtbot, synthetic_results: Path, synthetic_maps: dict, tmp_path: Path
) -> None:
    """Shapes drawn in world units (µm) on their own layer: the widget's numbers are numpy's
    on the same pixels of the λ map, for the selected shape and per shape in the CSV."""
    import pandas as pd

    from plugins.inspect_widget import InspectWidget
    from plugins.layers import store_layers
    from plugins.view import add_layer_data

    viewer = make_napari_viewer()
    add_layer_data(viewer, store_layers(synthetic_results / "cell.ome.zarr"))
    widget = InspectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="inspect")
    widget.std_max.value = 0.5
    widget.use_std.value = True

    def box_um(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:  # pixel rows r0..r1-1
        return np.array([[r0 - .5, c0 - .5], [r0 - .5, c1 - .5], [r1 - .5, c1 - .5],
                         [r1 - .5, c0 - .5]]) * PX

    # 1: the bottom-left block, across λ 1|2 and the unidentifiable corner; 2: in std > 0.5
    shapes = viewer.add_shapes([box_um(100, 128, 0, 64), box_um(0, 20, 30, 50)],
                               shape_type="rectangle", name="selection")
    assert widget.shapes.value is shapes
    qtbot.waitUntil(lambda: len(widget.selection_rows) == 2, timeout=10000)
    m = synthetic_maps
    lam = m["lam"].astype(np.float64)
    keep = (m["ident"] != 0) & ~(m["std"] > 0.5) & np.isfinite(lam)
    region, shown = np.s_[100:128, 0:64], lam[100:128, 0:64][keep[100:128, 0:64]]
    one = widget.selection_rows[0]
    assert one["n_pixels"] == 28 * 64 and one["area_um2"] == pytest.approx(28 * 64 * PX**2)
    assert one["lambda_mean"] == pytest.approx(shown.mean()) and 1 < shown.mean() < 2
    assert one["lambda_median"] == np.median(shown)
    assert one["lambda_sd"] == pytest.approx(shown.std(ddof=1))
    assert one["lambda_std_mean"] == pytest.approx(0.1, rel=1e-6)
    assert one["fraction_identifiable"] == pytest.approx((m["ident"][region] != 0).mean())
    assert one["fraction_visible"] == pytest.approx(shown.size / (28 * 64))
    two = widget.selection_rows[1]
    assert two["n_pixels"] == 20 * 20 and two["fraction_visible"] == pytest.approx(4 / 20)
    both = widget.selection_row  # nothing selected: all shapes together
    assert both["selection"] == "1,2" and both["n_pixels"] == 28 * 64 + 400

    shapes.selected_data = {0}
    qtbot.waitUntil(lambda: widget.selection_row["selection"] == "1", timeout=10000)
    assert f"λ mean {shown.mean():.3f}" in widget.region.value
    assert widget.region.value.startswith("selection 1 (plane 0)")

    shapes.add_rectangles(box_um(20, 30, 20, 30))  # a new shape updates the rows
    qtbot.waitUntil(lambda: len(widget.selection_rows) == 3, timeout=10000)
    table = pd.read_csv(widget.export_csv(tmp_path / "view.csv"))
    assert list(table["region"]) == ["nucleus", "nucleus", "selection", "selection", "selection"]
    assert list(table["selection"][2:]) == [1, 2, 3]
    assert table["lambda_mean"][2] == pytest.approx(shown.mean())


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


def test_sample_data_and_view_entry(make_napari_viewer, sample_cache: Path, monkeypatch,
                                    synthetic_results: Path) -> None:
    from plugins.view import open_viewer

    monkeypatch.setenv("CHROMARATE_CACHE", str(sample_cache))
    viewer = make_napari_viewer()
    viewer.open_sample("chromarate", "smooth")
    assert {"smooth_1ch_s0 λ mean", "smooth_1ch_s0 λ truth"} <= {x.name for x in viewer.layers}

    import warnings

    from qtpy.QtWidgets import QApplication, QTabBar

    from plugins.view import canvas_overlay

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        own = open_viewer(synthetic_results, show=False)
    try:
        assert "cell λ mean" in own.layers and not own.layers["stack λ mean"].visible
        assert {"chromarate: inspect", "chromarate: run"} <= set(own.window.dock_widgets)
        assert canvas_overlay(own, "scale_bar").visible
        assert not [w for w in caught if "scale_bar" in str(w.message)]  # no deprecation
        QApplication.processEvents()
        tabs = {bar.tabText(i): bar.currentIndex() == i
                for bar in own.window._qt_window.findChildren(QTabBar) for i in range(bar.count())}
        assert tabs == {"chromarate: inspect": True, "chromarate: run": False}  # opens on Inspect
    finally:
        own.close()


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
