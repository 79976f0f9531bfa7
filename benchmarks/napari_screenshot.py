"""Regenerate ``docs/img/overlay.png``: the smooth sample's λ overlay in napari.

Needs the ``napari`` extra and a display; headless, run it under a virtual one::

    xvfb-run -a python benchmarks/napari_screenshot.py [OUT.png]

The picture is the sample-data contribution (raw image, λ mean overlay, its colour bar) with
the inspect widget docked, reading out the field under the cursor.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "overlay.png"


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


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
