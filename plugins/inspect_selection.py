"""The inspect widget's drawn selection: shapes of a napari Shapes layer, summarised on the
current plane (per shape, and the selected shapes together) in a worker thread.

:class:`ShapeSelection` is a mixin of :class:`plugins.inspect_widget.InspectWidget`: it reads the
widget's ``rates``, ``shapes`` and ``region`` controls and its ``_plane_arrays``,
``_provenance`` and ``_on_error``. napari is imported inside functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.inspect_data import summarise_shapes
from plugins.summary import format_summary, shape_polygon

__all__ = ["ShapeSelection"]


class ShapeSelection:
    """Summaries over the shapes of the selection layer (a mixin; see the module)."""

    _alive: bool
    _hooked: set[str]
    _regions: list[dict[str, Any]]
    _region: dict[str, Any] | None
    _region_generation: int
    rates: Any
    shapes: Any
    region: Any

    def _on_shapes(self, *_: Any) -> None:
        layer = self.shapes.value
        if layer is not None and str(layer.unique_id) not in self._hooked:
            layer.events.data.connect(self.refresh_selection)
            layer.selected_data.events.items_changed.connect(self.refresh_selection)
            self._hooked.add(str(layer.unique_id))
        self.refresh_selection()

    def _polygons(self, lam: Any, plane: int) -> list[tuple[int, np.ndarray]]:
        """(shape number from 1, outline in the λ layer's full-resolution pixels) of each shape
        with an area, on the current plane when the shapes carry one."""
        layer = self.shapes.value
        if layer is None or not self._alive:
            return []
        found = []
        for i, (data, kind) in enumerate(zip(layer.data, layer.shape_type, strict=True)):
            coords = np.array([lam.world_to_data(layer.data_to_world(v)) for v in data])
            if lam.ndim == 3 and np.asarray(data).shape[1] >= 3 and round(coords[0, 0]) != plane:
                continue  # drawn on another plane
            poly = shape_polygon(coords, kind)
            if poly is not None:
                found.append((i + 1, poly))
        return found

    def refresh_selection(self, *_: Any) -> None:
        """Summarise the selection layer's shapes on the current plane, off the GUI thread."""
        lam = self.rates.value
        if lam is None or not self._alive:
            return
        from napari.qt.threading import create_worker

        plane = self._plane(lam)
        polygons = self._polygons(lam, plane)
        layer = self.shapes.value
        chosen = set() if layer is None else {i + 1 for i in layer.selected_data}
        chosen = {n for n, _ in polygons if n in chosen} or {n for n, _ in polygons}
        self._region_generation += 1
        generation = self._region_generation
        if not polygons:
            self._set_regions(([], None), generation)
            return
        worker = create_worker(
            summarise_shapes, self._plane_arrays(lam, plane, labels=False), polygons, chosen,
            **self._provenance(lam, plane),
            _start_thread=False,
            _connect={"returned": lambda result: self._set_regions(result, generation),
                      "errored": self._on_error},
        )
        worker.start()
        self._region_worker = worker

    def _set_regions(self, result: tuple[list[dict[str, Any]], dict[str, Any] | None],
                     generation: int) -> None:
        if generation != self._region_generation or not self._alive:
            return
        self._regions, self._region = result
        self.region.value = (
            "draw a rectangle or polygon in a Shapes layer" if self._region is None
            else format_summary(self._region)
        )

    @property
    def selection_row(self) -> dict[str, Any] | None:
        """The summary over the selected shapes (all shapes when none is selected)."""
        return None if self._region is None else dict(self._region)

    @property
    def selection_rows(self) -> list[dict[str, Any]]:
        """One summary row per shape (with an area) of the selection layer."""
        return list(self._regions)
