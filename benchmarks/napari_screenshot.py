"""Regenerate ``docs/img/overlay.png``: the smooth sample's λ overlay in napari
(and, with ``--real-field``, ``docs/img/real_field.png``: the real DSB2018 field of
``tests/data`` through every stage, opened as ``chromarate view`` opens it).

Needs the ``napari`` extra and a display; headless, run it under a virtual one::

    xvfb-run -a python benchmarks/napari_screenshot.py [OUT.png]
    xvfb-run -a python benchmarks/napari_screenshot.py --real-field [OUT.png]

The picture is the sample-data contribution (raw image, λ mean overlay, its colour bar) with
the inspect widget docked, reading out the field under the cursor.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "overlay.png"
REAL_FIELD_OUT = ROOT / "docs" / "img" / "real_field.png"
REAL_FIELD_RUN = {"method": "closed-form", "pixel_size_um": 0.3,
                  "estimator": {"delta_um": 0.3, "window_um": 0.3}}
"""The real field's run: its pixel size is unknown (0.3 µm passed), and the bandwidths are
fixed, since the automatic ones leave no pixel far enough inside its 7 µm nuclei
(``nuclei-too-small``, docs/your-own-images.md)."""


def main(out: str | Path = DEFAULT_OUT) -> Path:
    """Render the overlay and write it to ``out``; returns the path."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication
    from skimage.io import imsave

    from plugins.inspect_widget import InspectWidget
    from plugins.sample import sample_layers
    from plugins.view import add_layer_data

    viewer = napari.Viewer(title="chromarate", show=True)
    viewer.window.resize(1500, 900)
    add_layer_data(viewer, sample_layers("smooth_1ch_s0"))
    viewer.scale_bar.visible = True
    widget = InspectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="chromarate: inspect")
    viewer.reset_view()
    lam = viewer.layers["smooth_1ch_s0 λ mean"]
    cy, cx = (s * n / 2 for s, n in zip(lam.scale, lam.level_shapes[0], strict=True))
    viewer.cursor.position = (cy, cx)
    deadline = time.monotonic() + 30
    while not widget.table and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    widget._on_cursor()  # noqa: SLF001 (refresh the readout for the picture)
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    imsave(out, shot[..., :3], check_contrast=False)
    rgb = shot[..., :3].astype(float)
    print(f"wrote {out}: {shot.shape[1]}x{shot.shape[0]} px, mean RGB "
          f"{np.round(rgb.reshape(-1, 3).mean(0), 1).tolist()}")
    viewer.close()
    return out


def real_field(out: str | Path = REAL_FIELD_OUT) -> Path:
    """Run the real field of ``tests/data`` (:data:`REAL_FIELD_RUN`) and write the canvas, as
    ``chromarate view`` shows the result, to ``out``."""
    import shutil
    import tempfile

    import numpy as np
    from skimage.io import imsave

    from pipeline.config import Settings
    from pipeline.process import process_image
    from plugins.view import open_viewer, overlay_screenshot

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in" / "field.tif"
        src.parent.mkdir()
        shutil.copy(ROOT / "tests" / "data" / "dsb2018_nuclei.tif", src)
        res = process_image(src, Path(tmp) / "out", Settings(**REAL_FIELD_RUN))
        viewer = open_viewer(res["store"], show=True, widgets=False)
        viewer.window.resize(1200, 1000)
        shot = overlay_screenshot(viewer)
        viewer.close()
    out = Path(out)
    imsave(out, shot[..., :3], check_contrast=False)
    print(f"wrote {out}: {shot.shape[1]}x{shot.shape[0]} px, mean RGB "
          f"{np.round(shot[..., :3].reshape(-1, 3).mean(0), 1).tolist()}")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--real-field"]:
        real_field(*(args[1:2] or [REAL_FIELD_OUT]))
    else:
        main(args[0] if args else DEFAULT_OUT)
