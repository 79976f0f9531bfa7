"""The inspect widget's overlay: λ masked where untrusted (faded or hidden, every pyramid
level lazily), λ mean or λ std shown one at a time, and the colour scale.

:class:`MaskedOverlay` is a mixin of :class:`plugins.inspect_widget.InspectWidget`: it reads the
widget's controls (``rates``, ``show``, ``use_std``, ``std_max``, ``identifiable``, ``mode``,
``legend``) and its ``_viewer`` and ``_original`` (unmasked data by λ layer), and calls its
``refresh_table`` after masking. napari is imported inside functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.report.figures import LAMBDA_TITLE, STD_TITLE
from plugins.inspect_data import layer_info, levels, pack, where
from plugins.layers import LAMBDA_UNITS
from plugins.summary import visible_mask

__all__ = ["FADE_OPACITY", "MaskedOverlay", "SHOW_LAMBDA", "SHOW_STD"]

FADE_OPACITY = 0.25  # of the λ layer's opacity, for pixels that are faded rather than hidden
FADED = "lambda_faded"
SHOW_LAMBDA, SHOW_STD = "λ mean", "λ std"


class MaskedOverlay:
    """Masking, fading and the colour scale of the chosen λ layer (a mixin; see the module)."""

    _viewer: Any
    _original: dict[str, Any]
    rates: Any
    show: Any
    use_std: Any
    std_max: Any
    identifiable: Any
    mode: Any
    legend: Any

    # --- layers around the chosen λ layer --------------------------------------------------
    def _sibling(self, layer: Any, role: str) -> Any | None:
        """The layer of ``role`` from the same store as ``layer``."""
        store = layer_info(layer).get("store")
        if store is None:
            return None
        for other in self._viewer.layers:
            info = layer_info(other)
            if info.get("store") == store and info.get("role") == role:
                return other
        return None

    def _faded_layer(self, layer: Any) -> Any | None:
        for other in self._viewer.layers:
            info = layer_info(other)
            if info.get("role") == FADED and info.get("parent") == layer.name:
                return other
        return None

    def _source(self, layer: Any) -> Any:
        """The λ layer's data before any masking."""
        return self._original.setdefault(str(layer.unique_id), layer.data)

    def _has_std(self, std: Any | None) -> bool:
        return std is not None and bool(layer_info(std).get("available", True))

    # --- λ mean or λ std ---------------------------------------------------------------------
    def _on_show(self, *_: Any) -> None:
        """Show λ mean or its std (one at a time), each with its colour bar and its title."""
        lam = self.rates.value
        if lam is None:
            return
        std = self._sibling(lam, "lambda_std")
        want_std = self.show.value == SHOW_STD and self._has_std(std)
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
        parts = levels(self._source(lam), lam.multiscale)
        std = self._sibling(lam, "lambda_std") if self.use_std.value else None
        ident = self._sibling(lam, "identifiable") if self.identifiable.value else None

        def matching(other: Any | None) -> list[Any]:
            if other is None:
                return [None] * len(parts)
            got = levels(other.data, other.multiscale)
            same = len(got) == len(parts) and all(
                g.shape == v.shape for g, v in zip(got, parts, strict=True)
            )
            return got if same else [None] * len(parts)

        return [
            visible_mask(v, s, i, std_max=self.std_max.value if std is not None else None,
                         require_identifiable=ident is not None)
            for v, s, i in zip(parts, matching(std), matching(ident), strict=True)
        ]

    def apply(self, *_: Any) -> None:
        """Show λ where trusted; fade (a dim copy beneath) or hide the rest."""
        lam = self.rates.value
        if lam is None:
            return
        multi = lam.multiscale
        parts = levels(self._source(lam), multi)
        masks = self.masks(lam)
        lam.data = pack([where(m, v, np.nan) for m, v in zip(masks, parts, strict=True)], multi)
        faded = self._faded_layer(lam)
        if self.mode.value == "fade":
            data = pack([where(m, np.nan, v) for m, v in zip(masks, parts, strict=True)], multi)
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
            metadata={"chromarate": {**layer_info(lam), "role": FADED, "parent": lam.name}},
        )
        layers = self._viewer.layers
        layers.insert(layers.index(lam), faded)
        layers.selection.active = lam  # keep the λ layer's controls in front
        return faded

    def _sync(self, *_: Any) -> None:
        """The faded copy follows λ's colours; the legend states them."""
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
