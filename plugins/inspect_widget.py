"""The inspect dock widget: the λ overlay on an image, masked by uncertainty and identifiability,
with a colour scale, readouts per nucleus and over a drawn selection (a Shapes layer), and CSV
export.

The widget is wired from three parts: :mod:`plugins.inspect_overlay` (masking, fading, λ mean or
std, the colour scale), :mod:`plugins.inspect_selection` (the drawn selection) and this module
(layer choices, per-nucleus readouts, export). Their plain arithmetic lives in
:mod:`plugins.inspect_data` and :mod:`plugins.summary`. It needs the ``napari`` extra
(magicgui); napari itself is imported inside functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
)

from plugins.inspect_data import (
    layer_info,
    materialize,
    plane_arrays,
    provenance,
    qc_text,
    summarise_nuclei,
)
from plugins.inspect_overlay import FADE_OPACITY, SHOW_LAMBDA, SHOW_STD, MaskedOverlay
from plugins.inspect_selection import ShapeSelection
from plugins.summary import format_summary, write_summaries_csv

if TYPE_CHECKING:
    import napari

# materialize and qc_text: imported from here by callers before the split
__all__ = ["FADE_OPACITY", "InspectWidget", "SHOW_LAMBDA", "SHOW_STD", "materialize", "qc_text"]

log = logging.getLogger(__name__)


class InspectWidget(ShapeSelection, MaskedOverlay, Container):
    """Dock widget: pick the image and λ layers; fade or hide untrusted pixels; read out and
    export per-nucleus summaries.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._original: dict[str, Any] = {}  # λ layer's unique_id -> its unmasked data
        self._hooked: set[str] = set()
        self._table: list[dict[str, Any]] = []
        self._table_key: tuple | None = None
        self._generation = 0
        self._regions: list[dict[str, Any]] = []  # one row per shape of the selection layer
        self._region: dict[str, Any] | None = None  # the selected shapes (or all) together
        self._region_generation = 0
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self.rates = ComboBox(label="λ layer", choices=self._rate_choices, nullable=True)
        self.show = ComboBox(label="show", choices=[SHOW_LAMBDA, SHOW_STD], value=SHOW_LAMBDA,
                             tooltip="λ std replaces λ on screen (its own colours and colour "
                             "bar); it is never blended into λ")
        self.use_std = CheckBox(text="mask where λ std above", value=False)
        self.std_max = FloatSpinBox(label="λ std max", value=0.5, min=0.0, max=1e6, step=0.05)
        self.identifiable = CheckBox(text="mask unidentifiable pixels", value=True)
        self.mode = ComboBox(label="masked pixels", choices=["fade", "hide"], value="fade")
        self.legend = Label(label="colour scale", value="")
        self.qc = Label(label="calibration, QC", value="")
        self.cursor = Label(label="under cursor", value="")
        self.selection = Label(label="selected", value="")
        self.shapes = ComboBox(label="selection layer", choices=self._shape_choices,
                               nullable=True,
                               tooltip="a Shapes layer: its selected shapes (or all of them)")
        self.region = Label(label="selection", value="")
        self.csv = FileEdit(label="CSV", mode="w", filter="*.csv")
        self.export = PushButton(text="Export visible summaries to CSV")
        self.extend([
            self.image, self.rates, self.show, self.use_std, self.std_max, self.identifiable, self.mode,
            self.legend, self.qc, self.cursor, self.selection, self.shapes, self.region, self.csv,
            self.export,
        ])
        for w in (self.use_std, self.std_max, self.identifiable, self.mode):
            w.changed.connect(self.apply)
        self.rates.changed.connect(self._on_rates)
        self.show.changed.connect(self._on_show)
        self.image.changed.connect(self._on_image)
        self.shapes.changed.connect(self._on_shapes)
        self.export.changed.connect(lambda *_: self.export_csv())
        self._alive = True
        napari_viewer.cursor.events.position.connect(self._on_cursor)
        napari_viewer.dims.events.current_step.connect(self.refresh_table)
        napari_viewer.layers.events.inserted.connect(self._on_layers_changed)
        napari_viewer.layers.events.removed.connect(self._on_layers_changed)
        self.native.destroyed.connect(self._on_destroyed)
        self._on_layers_changed()
        self._on_rates()

    def _on_destroyed(self, *_: Any) -> None:
        """The dock was closed: stop listening to the viewer, drop late worker results."""
        self._alive = False
        events = self._viewer
        for emitter, callback in (
            (events.cursor.events.position, self._on_cursor),
            (events.dims.events.current_step, self.refresh_table),
            (events.layers.events.inserted, self._on_layers_changed),
            (events.layers.events.removed, self._on_layers_changed),
        ):
            emitter.disconnect(callback)

    # --- choices -------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [
            layer for layer in self._viewer.layers
            if isinstance(layer, Image) and not layer_info(layer).get("role", "").startswith("lambda")
        ]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        layers = self._image_layers()
        raw = [layer for layer in layers if layer_info(layer).get("role") == "raw"]
        return [(layer.name, layer) for layer in raw + [x for x in layers if x not in raw]]

    def _rate_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer) for layer in self._viewer.layers
            if isinstance(layer, Image) and layer_info(layer).get("role") == "lambda_mean"
        ]

    def _on_layers_changed(self, *_: Any) -> None:
        """Keep the choices current; pick the first λ layer when none is chosen yet."""
        self.reset_choices()
        found = [c for c in self.rates.choices if c is not None]
        if self.rates.value is None and found:
            self.rates.value = found[0]
        shapes = [c for c in self.shapes.choices if c is not None]
        if self.shapes.value is None and shapes:
            self.shapes.value = shapes[0]

    def _shape_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Shapes)]

    def _on_image(self, *_: Any) -> None:
        image, lam = self.image.value, self.rates.value
        if image is None:
            return
        image.visible = True
        if lam is not None:
            layers = self._viewer.layers
            i, j = layers.index(image), layers.index(lam)
            if i > j:
                layers.move(i, j)

    def _on_rates(self, *_: Any) -> None:
        lam = self.rates.value
        if lam is None:
            self.legend.value = "no λ layer: open chromarate results"
            return
        lam.visible = True
        lam.colorbar.visible = True
        if str(lam.unique_id) not in self._hooked:
            lam.events.contrast_limits.connect(self._sync)
            lam.events.colormap.connect(self._sync)
            self._hooked.add(str(lam.unique_id))
        std = self._sibling(lam, "lambda_std")
        has_std = self._has_std(std)
        self.use_std.enabled = self.std_max.enabled = self.show.enabled = has_std
        self.use_std.tooltip = None if has_std else "this store holds no λ uncertainty"
        nuclei = self._sibling(lam, "nuclei")
        if nuclei is not None:  # outlines: a filled whole-field nucleus would tint λ
            nuclei.contour, nuclei.visible = 2, True
        raw = self._sibling(lam, "raw")
        if raw is not None and self.image.value is None:
            self.image.value = raw
        self.qc.value = qc_text(layer_info(lam).get("attrs") or {}, self._plane(lam))
        store = layer_info(lam).get("store")
        if store:
            self.csv.value = Path(store).parent / f"{layer_info(lam).get('stem', 'lambda')}_view_summary.csv"
        self.apply()
        self._on_show()

    # --- summaries -------------------------------------------------------------------------
    def _plane(self, layer: Any) -> int:
        if layer.ndim < 3:
            return 0
        coords = layer.world_to_data(self._viewer.dims.point)
        return int(np.clip(round(float(coords[0])), 0, layer.level_shapes[0][0] - 1))

    def _plane_arrays(self, lam: Any, plane: int, *, labels: bool) -> dict[str, Any]:
        """Level-0 arrays of ``plane`` for a summary: λ before masking, the visible mask, its
        std and identifiable mask, and (with ``labels``) the nuclei."""
        others = {"std": self._sibling(lam, "lambda_std"),
                  "identifiable": self._sibling(lam, "identifiable")}
        if labels:
            others["labels"] = self._sibling(lam, "nuclei")
        return plane_arrays(lam, self._source(lam), self.masks(lam)[0], others, plane)

    def _provenance(self, lam: Any, plane: int) -> dict[str, Any]:
        return provenance(lam, plane)

    def refresh_table(self, *_: Any) -> None:
        """Recompute the per-nucleus rows for the current plane, off the GUI thread."""
        lam = self.rates.value
        if lam is None:
            self._table = []
            return
        from napari.qt.threading import create_worker

        plane = self._plane(lam)
        self._generation += 1
        generation = self._generation
        worker = create_worker(
            summarise_nuclei, self._plane_arrays(lam, plane, labels=True),
            **self._provenance(lam, plane),
            _start_thread=False,
            _connect={"returned": lambda rows: self._set_table(rows, generation),
                      "errored": self._on_error},
        )
        worker.start()
        self._worker = worker
        self.refresh_selection()

    def _set_table(self, rows: list[dict[str, Any]], generation: int) -> None:
        if generation != self._generation or not self._alive:
            return  # a newer request is on its way, or the widget is gone
        self._table = rows
        self._on_cursor()
        self._on_selected()

    def _on_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        show_error(f"chromarate: could not summarise λ: {exc}")

    @property
    def table(self) -> list[dict[str, Any]]:
        """The current rows (one per nucleus, or one for the whole field)."""
        return list(self._table)

    def row_for(self, label: int) -> dict[str, Any] | None:
        """The row of nucleus ``label`` (0: the whole field when there are no nuclei)."""
        return next((r for r in self._table if r["nucleus_id"] == int(label)), None)

    def _label_at_cursor(self) -> int | None:
        lam = self.rates.value
        if lam is None:
            return None
        nuclei = self._sibling(lam, "nuclei")
        if nuclei is None:
            inside = lam.get_value(self._viewer.cursor.position, world=True)
            return 0 if inside is not None else None
        value = nuclei.get_value(self._viewer.cursor.position, world=True)
        if isinstance(value, tuple):  # multiscale: (level, value)
            value = value[1]
        return None if value is None else int(value)

    def _on_cursor(self, *_: Any) -> None:
        if not self._alive:
            return
        label = self._label_at_cursor()
        self.cursor.value = "" if label is None else format_summary(self.row_for(label))

    def _on_selected(self, *_: Any) -> None:
        lam = self.rates.value
        nuclei = None if lam is None else self._sibling(lam, "nuclei")
        if nuclei is None:
            self.selection.value = format_summary(self.row_for(0)) if self._table else ""
            return
        if str(nuclei.unique_id) not in self._hooked:
            nuclei.events.selected_label.connect(self._on_selected)
            self._hooked.add(str(nuclei.unique_id))
        self.selection.value = format_summary(self.row_for(nuclei.selected_label))

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the current rows, per nucleus and per drawn shape, with the masking settings as
        provenance, to ``path``."""
        from napari.utils.notifications import show_error, show_info

        lam = self.rates.value
        path = Path(path or self.csv.value)
        if lam is None or not self._table:
            show_error("chromarate: nothing to export (choose a λ layer first)")
            return None
        attrs = layer_info(lam).get("attrs", {})
        settings = attrs.get("settings", {})
        columns = {
            "source": attrs.get("source", layer_info(lam).get("store", "")),
            "method": attrs.get("method", ""),
            "calibration": settings.get("calibration", ""),
            "pixel_size_um": layer_info(lam).get("pixel_size_um"),
            "std_max": self.std_max.value if self.use_std.value else None,
            "mask_unidentifiable": bool(self.identifiable.value),
        }
        try:
            out = write_summaries_csv(self._table + self._regions, path, provenance=columns)
        except OSError as exc:
            show_error(f"chromarate: cannot write {path}: {exc}")
            return None
        show_info(f"chromarate: wrote {len(self._table) + len(self._regions)} row(s) to {out}")
        return out

