"""What the widgets and ``chromarate view`` share on a viewer: adding reader output as layers,
and finding the canvas overlays.

It imports no other GUI module of the plugin, so that :mod:`plugins.view` (which docks the
widgets) and the widgets (which add layers and titles) both depend on it and not on each
other; ``lint-imports`` keeps ``plugins`` free of import cycles. napari is imported inside
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from plugins.layers import LayerData

if TYPE_CHECKING:
    import napari

__all__ = ["add_layer_data", "canvas_overlay"]


def add_layer_data(
    viewer: napari.viewer.Viewer, layers: Sequence[LayerData], *, replace: bool = True
) -> list[Any]:
    """Add reader output to ``viewer`` (nuclei as outlines); with ``replace``, layers of the
    same name are removed first."""
    from napari.layers import Layer

    added = []
    for data, kwargs, layer_type in layers:
        name = kwargs.get("name")
        if replace and name in viewer.layers:
            viewer.layers.remove(name)
        layer = viewer.add_layer(Layer.create(data, dict(kwargs), layer_type))
        if kwargs.get("metadata", {}).get("chromarate", {}).get("role") == "nuclei":
            layer.contour = 2  # outlines, so that λ beneath keeps its colours
        added.append(layer)
    return added


def canvas_overlay(viewer: napari.viewer.Viewer, name: str) -> Any:
    """The viewer's ``scale_bar`` or ``text`` overlay, where napari ≥ 0.9 keeps it
    (``viewer.canvas.overlays``; the old ``viewer.scale_bar`` warns), else the old attribute."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and name in overlays:
        return overlays[name]
    return getattr(viewer, {"text": "text_overlay"}.get(name, name))
