"""The plugin inside a real napari viewer (run under ``xvfb-run -a``: needs a display).

Skipped cleanly when napari (the ``napari`` extra) or a display is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.napari  # skipped without a display (conftest.py)

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
