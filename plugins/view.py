"""``chromarate view OUT``: napari with the results, the inspect and run widgets docked.

Examples
--------
From the shell (``chromarate view`` calls :func:`main`)::

    python -m plugins.view results/
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.canvas import add_layer_data, canvas_overlay

if TYPE_CHECKING:
    import napari

__all__ = ["add_layer_data", "canvas_overlay", "main", "open_viewer", "overlay_screenshot"]

_MISSING = (
    "chromarate view needs napari and a Qt binding: pip install 'chromarate[napari]'"
)


def open_viewer(
    path: str | os.PathLike[str] | None = None, *, show: bool = True, widgets: bool = True
) -> napari.viewer.Viewer:
    """A viewer with ``path`` (results folder, store or TIFF folder) read by chromarate.

    Parameters
    ----------
    path : path, optional
        What to open; nothing when None.
    show : bool
        Show the window (screenshots of the canvas need a shown window).
    widgets : bool
        Dock the inspect and run widgets.
    """
    import napari

    from plugins.reader import read_path

    viewer = napari.Viewer(title="chromarate", show=show)
    if path is not None:
        add_layer_data(viewer, read_path(path))
        viewer.reset_view()
    canvas_overlay(viewer, "scale_bar").visible = True
    if widgets:
        from plugins.inspect_widget import InspectWidget
        from plugins.run_widget import RunWidget

        inspect = viewer.window.add_dock_widget(InspectWidget(viewer), name="chromarate: inspect")
        viewer.window.add_dock_widget(
            RunWidget(viewer), name="chromarate: run", tabify=True
        )
        inspect.raise_()  # open on Inspect: the results are what the user came to see
    return viewer


def overlay_screenshot(viewer: napari.viewer.Viewer) -> Any:
    """The canvas as an RGBA uint8 array (no flash), after fitting the view to the data."""
    viewer.reset_view()
    return viewer.screenshot(canvas_only=True, flash=False)


def main(path: str | os.PathLike[str] | None = None) -> int:
    """Open napari on ``path`` and run its event loop; the exit code for the CLI.

    Returns 0 after the window closes, 2 when napari is missing or ``path`` does not exist
    (with the reason on stderr).
    """
    try:
        import napari
    except ImportError:
        print(_MISSING, file=sys.stderr)
        return 2
    if path is not None and not Path(path).exists():
        print(f"chromarate view: {path}: no such file or folder", file=sys.stderr)
        return 2
    try:
        open_viewer(path)
    except ValueError as exc:
        print(f"chromarate view: {exc}", file=sys.stderr)
        return 2
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
