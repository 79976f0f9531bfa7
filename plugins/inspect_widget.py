"""The inspect dock widget: the λ overlay on an image, masked by uncertainty and identifiability,
with a colour scale, readouts per nucleus and over a drawn selection (a Shapes layer), and CSV
export.

The arithmetic lives in :mod:`plugins.summary`; this module only wires it to napari. It needs
the ``napari`` extra (magicgui); napari itself is imported inside functions.
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

from pipeline.report.figures import LAMBDA_TITLE, STD_TITLE
from plugins.layers import LAMBDA_UNITS
from plugins.summary import (
    format_summary,
    label_summaries,
    polygon_mask,
    region_summary,
    shape_polygon,
    visible_mask,
    write_summaries_csv,
)

if TYPE_CHECKING:
    import napari

__all__ = ["FADE_OPACITY", "InspectWidget", "SHOW_LAMBDA", "SHOW_STD"]

log = logging.getLogger(__name__)

FADE_OPACITY = 0.25  # of the λ layer's opacity, for pixels that are faded rather than hidden
_FADED = "lambda_faded"
SHOW_LAMBDA, SHOW_STD = "λ mean", "λ std"


def qc_text(attrs: dict[str, Any], plane: int = 0) -> str:
    """One line for the viewer: the plane's calibration (source, confidence) and QC flags,
    as the run recorded them (the codes are explained in docs/your-own-images.md)."""
    from pipeline.summary import image_flags

    planes = attrs.get("planes") or []
    if not planes:
        return "no run record in this store"
    rec = planes[min(plane, len(planes) - 1)]
    cal = rec.get("calibration") or {}
    text = f"calibration {cal.get('source') or cal.get('mode') or 'unknown'}"
    if cal.get("confidence") is not None:
        text += f" (confidence {float(cal['confidence']):.2g})"
    if cal.get("identifiable") is False:
        text += ", not identifiable"
    try:
        flags = image_flags(attrs, min(plane, len(planes) - 1),
                            float(rec.get("fraction_identifiable", 1.0)))
    except (KeyError, TypeError, ValueError):
        flags = []
    return f"{text}; flags: {', '.join(flags) or 'none'}"


def _info(layer: Any) -> dict[str, Any]:
    return dict(getattr(layer, "metadata", {}).get("chromarate", {}))


def _levels(data: Any, multiscale: bool) -> list[Any]:
    return list(data) if multiscale else [data]


def _pack(levels: list[Any], multiscale: bool) -> Any:
    return levels if multiscale else levels[0]


class InspectWidget(Container):
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
            if isinstance(layer, Image) and not _info(layer).get("role", "").startswith("lambda")
        ]

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        layers = self._image_layers()
        raw = [layer for layer in layers if _info(layer).get("role") == "raw"]
        return [(layer.name, layer) for layer in raw + [x for x in layers if x not in raw]]

    def _rate_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer) for layer in self._viewer.layers
            if isinstance(layer, Image) and _info(layer).get("role") == "lambda_mean"
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

    # --- layers around the chosen λ layer --------------------------------------------------
    def _sibling(self, layer: Any, role: str) -> Any | None:
        store = _info(layer).get("store")
        if store is None:
            return None
        for other in self._viewer.layers:
            info = _info(other)
            if info.get("store") == store and info.get("role") == role:
                return other
        return None

    def _faded_layer(self, layer: Any) -> Any | None:
        for other in self._viewer.layers:
            if _info(other).get("role") == _FADED and _info(other).get("parent") == layer.name:
                return other
        return None

    def _source(self, layer: Any) -> Any:
        return self._original.setdefault(str(layer.unique_id), layer.data)

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
        has_std = std is not None and _info(std).get("available", True)
        self.use_std.enabled = self.std_max.enabled = self.show.enabled = bool(has_std)
        self.use_std.tooltip = None if has_std else "this store holds no λ uncertainty"
        nuclei = self._sibling(lam, "nuclei")
        if nuclei is not None:  # outlines: a filled whole-field nucleus would tint λ
            nuclei.contour, nuclei.visible = 2, True
        raw = self._sibling(lam, "raw")
        if raw is not None and self.image.value is None:
            self.image.value = raw
        self.qc.value = qc_text(_info(lam).get("attrs") or {}, self._plane(lam))
        store = _info(lam).get("store")
        if store:
            self.csv.value = Path(store).parent / f"{_info(lam).get('stem', 'lambda')}_view_summary.csv"
        self.apply()
        self._on_show()

    def _on_show(self, *_: Any) -> None:
        """Show λ mean or its std (one at a time), each with its colour bar and its title."""
        lam = self.rates.value
        if lam is None:
            return
        std = self._sibling(lam, "lambda_std")
        want_std = (self.show.value == SHOW_STD and std is not None
                    and bool(_info(std).get("available", True)))
        lam.visible = lam.colorbar.visible = not want_std
        faded = self._faded_layer(lam)
        if faded is not None:
            faded.visible = not want_std
        if std is not None:
            std.visible = std.colorbar.visible = want_std
        shown = std if want_std else lam
        shown.colorbar.gridded = True  # the title goes beside the bar, not over it
        self._colorbar_title(STD_TITLE if want_std else LAMBDA_TITLE)

    def _colorbar_title(self, text: str) -> None:
        from plugins.canvas import canvas_overlay

        title = canvas_overlay(self._viewer, "text")
        title.text, title.position, title.visible = text, "top_right", True
        if hasattr(title, "gridded"):
            title.gridded = True

    @property
    def colorbar_title(self) -> str:
        """The title shown beside the colour bar (``λ (unitless)`` or its std's)."""
        from plugins.canvas import canvas_overlay

        return str(canvas_overlay(self._viewer, "text").text)

    # --- masking ---------------------------------------------------------------------------
    def masks(self, layer: Any | None = None) -> list[Any]:
        """The visible-pixel mask of each pyramid level of the λ layer (lazy for dask data)."""
        lam = layer or self.rates.value
        multi = lam.multiscale
        levels = _levels(self._source(lam), multi)
        std = self._sibling(lam, "lambda_std") if self.use_std.value else None
        ident = self._sibling(lam, "identifiable") if self.identifiable.value else None

        def matching(other: Any | None) -> list[Any]:
            if other is None:
                return [None] * len(levels)
            got = _levels(other.data, other.multiscale)
            same = len(got) == len(levels) and all(
                g.shape == v.shape for g, v in zip(got, levels, strict=True)
            )
            return got if same else [None] * len(levels)

        return [
            visible_mask(v, s, i, std_max=self.std_max.value if std is not None else None,
                         require_identifiable=ident is not None)
            for v, s, i in zip(levels, matching(std), matching(ident), strict=True)
        ]

    def apply(self, *_: Any) -> None:
        """Show λ where trusted; fade (a dim copy beneath) or hide the rest."""
        lam = self.rates.value
        if lam is None:
            return
        multi = lam.multiscale
        levels = _levels(self._source(lam), multi)
        masks = self.masks(lam)
        lam.data = _pack([_where(m, v, np.nan) for m, v in zip(masks, levels, strict=True)], multi)
        faded = self._faded_layer(lam)
        if self.mode.value == "fade":
            data = _pack([_where(m, np.nan, v) for m, v in zip(masks, levels, strict=True)], multi)
            if faded is None:
                faded = self._add_faded(lam, data)
            else:
                faded.data = data
            self._sync()
        elif faded is not None:
            self._viewer.layers.remove(faded)
        self.refresh_table()

    def _add_faded(self, lam: Any, data: Any) -> Any:
        from napari.layers import Image

        faded = Image(
            data,
            name=f"{lam.name} (faded)",
            multiscale=lam.multiscale,
            colormap=lam.colormap,
            contrast_limits=lam.contrast_limits,
            opacity=FADE_OPACITY * lam.opacity,
            blending="translucent",
            scale=lam.scale,
            translate=lam.translate,
            units=lam.units,
            axis_labels=lam.axis_labels,
            metadata={"chromarate": {**_info(lam), "role": _FADED, "parent": lam.name}},
        )
        layers = self._viewer.layers
        layers.insert(layers.index(lam), faded)
        layers.selection.active = lam  # keep the λ layer's controls in front
        return faded

    def _sync(self, *_: Any) -> None:
        lam = self.rates.value
        if lam is None:
            return
        faded = self._faded_layer(lam)
        if faded is not None:
            faded.colormap = lam.colormap
            faded.contrast_limits = lam.contrast_limits
        lo, hi = lam.contrast_limits
        self.legend.value = (
            f"{LAMBDA_UNITS}\n{lam.colormap.name}: {lo:.3g} (dark) → {hi:.3g} (bright)\n"
            "λ > 1: methylation outpaces acetylation"
        )

    # --- summaries -------------------------------------------------------------------------
    def _plane(self, layer: Any) -> int:
        if layer.ndim < 3:
            return 0
        coords = layer.world_to_data(self._viewer.dims.point)
        return int(np.clip(round(float(coords[0])), 0, layer.level_shapes[0][0] - 1))

    def refresh_table(self, *_: Any) -> None:
        """Recompute the per-nucleus rows for the current plane, off the GUI thread."""
        lam = self.rates.value
        if lam is None:
            self._table = []
            return
        from napari.qt.threading import create_worker

        plane = self._plane(lam)
        nuclei = self._sibling(lam, "nuclei")
        std = self._sibling(lam, "lambda_std")
        level0 = _levels(self._source(lam), lam.multiscale)[0]
        mask0 = self.masks(lam)[0]
        labels0 = None if nuclei is None else _levels(nuclei.data, nuclei.multiscale)[0]
        std0 = None if std is None else _levels(std.data, std.multiscale)[0]
        ident = self._sibling(lam, "identifiable")
        ident0 = None if ident is None else _levels(ident.data, ident.multiscale)[0]
        if lam.ndim == 3:
            level0, mask0 = level0[plane], mask0[plane]
            labels0 = None if labels0 is None else labels0[plane]
            std0 = None if std0 is None else std0[plane]
            ident0 = None if ident0 is None else ident0[plane]
        info = _info(lam)
        self._generation += 1
        generation = self._generation
        worker = create_worker(
            _summaries, level0, labels0, mask0, std0, ident0,
            pixel_size_um=float(info.get("pixel_size_um") or lam.scale[-1]),
            file=Path(str(info.get("attrs", {}).get("source", info.get("store", lam.name)))).name,
            plane=plane,
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

    # --- the drawn selection ---------------------------------------------------------------
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
        std = self._sibling(lam, "lambda_std")
        ident = self._sibling(lam, "identifiable")
        arrays = {
            "lam": _levels(self._source(lam), lam.multiscale)[0],
            "visible": self.masks(lam)[0],
            "std": None if std is None else _levels(std.data, std.multiscale)[0],
            "identifiable": None if ident is None else _levels(ident.data, ident.multiscale)[0],
        }
        if lam.ndim == 3:
            arrays = {k: None if v is None else v[plane] for k, v in arrays.items()}
        info = _info(lam)
        worker = create_worker(
            _regions, arrays, polygons, chosen,
            pixel_size_um=float(info.get("pixel_size_um") or lam.scale[-1]),
            file=Path(str(info.get("attrs", {}).get("source", info.get("store", lam.name)))).name,
            plane=plane,
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

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the current rows, per nucleus and per drawn shape, with the masking settings as
        provenance, to ``path``."""
        from napari.utils.notifications import show_error, show_info

        lam = self.rates.value
        path = Path(path or self.csv.value)
        if lam is None or not self._table:
            show_error("chromarate: nothing to export (choose a λ layer first)")
            return None
        attrs = _info(lam).get("attrs", {})
        settings = attrs.get("settings", {})
        provenance = {
            "source": attrs.get("source", _info(lam).get("store", "")),
            "method": attrs.get("method", ""),
            "calibration": settings.get("calibration", ""),
            "pixel_size_um": _info(lam).get("pixel_size_um"),
            "std_max": self.std_max.value if self.use_std.value else None,
            "mask_unidentifiable": bool(self.identifiable.value),
        }
        try:
            out = write_summaries_csv(self._table + self._regions, path, provenance=provenance)
        except OSError as exc:
            show_error(f"chromarate: cannot write {path}: {exc}")
            return None
        show_info(f"chromarate: wrote {len(self._table) + len(self._regions)} row(s) to {out}")
        return out


def _where(mask: Any, a: Any, b: Any) -> Any:
    """``where(mask, a, b)``, lazily when either array is dask."""
    if any(hasattr(x, "dask") for x in (mask, a, b)):
        import dask.array as da

        return da.where(mask, a, b)
    return np.where(mask, a, b)


def materialize(x: Any) -> np.ndarray | None:
    """``np.asarray`` of a possibly lazy (dask) array, safe in a worker thread.

    dask runs its global callbacks (napari registers its opportunistic cache as one) through
    ``dask.callbacks.local_callbacks``, which swaps the global set without a lock: a worker's
    compute racing the GUI thread's slicing could run the cache in both, and one's finish then
    cleared the other's start times (``KeyError`` in ``dask/cache.py``). Passing explicit, empty
    callbacks leaves the global set alone.
    """
    if x is None:
        return None
    if hasattr(x, "dask"):
        return np.asarray(x.compute(callbacks=()))
    return np.asarray(x)


def _regions(arrays: dict[str, Any], polygons: list[tuple[int, np.ndarray]], chosen: set[int],
             **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-shape rows and the row of the chosen shapes together: runs in a worker thread."""
    a = {k: materialize(v) for k, v in arrays.items()}
    stats = {"std": a["std"], "identifiable": a["identifiable"], **kwargs}

    def summary(numbers: list[int]) -> dict[str, Any]:
        mask = polygon_mask([p for n, p in polygons if n in numbers], a["lam"].shape)
        return region_summary(a["lam"], mask, a["visible"], selection=",".join(map(str, numbers)),
                              **stats)

    return [summary([n]) for n, _ in polygons], summary(sorted(chosen))


def _summaries(lam: Any, labels: Any, mask: Any, std: Any, identifiable: Any, **kwargs: Any
               ) -> list[dict[str, Any]]:
    """Compute the (possibly lazy) plane and summarise it: runs in a worker thread."""
    return label_summaries(
        materialize(lam), materialize(labels), materialize(mask), std=materialize(std),
        identifiable=materialize(identifiable), **kwargs,
    )
