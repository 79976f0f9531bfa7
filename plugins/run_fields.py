"""The run widget's settings fields, read from the settings model so that they cannot drift.

Each field of the run widget is a :class:`FieldSpec` taken from
:class:`pipeline.config.Settings`: its default, its choices (the ``Literal`` values of the
field's type), its lower bound (``ge``) and its help text (the field's ``description``). A new
choice or default in ``pipeline.config`` reaches the widget without editing it. Plain: no
napari, no Qt, no magicgui.

Examples
--------
>>> spec = field_spec("device")
>>> spec.default, spec.choices
('auto', ('auto', 'cpu', 'cuda'))
>>> field_spec("tile_size_px").path, field_spec("tile_size_px").minimum
(('run', 'tile_px'), 16)
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.config import Settings

__all__ = ["ENSEMBLE_SECTION", "FIELDS", "PAIRS", "FieldSpec", "field_spec", "literal_choices", "setting_labels"]

# the settings section that holds ensemble_size ("uncertainty": members for every method)
ENSEMBLE_SECTION = "uncertainty" if "uncertainty" in Settings.model_fields else "neural"
# the widget's fields: build_settings keyword -> (path in Settings, label)
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "method": (("method",), "method"),
    "device": (("device",), "device"),
    "ensemble_size": ((ENSEMBLE_SECTION, "ensemble_size"), "ensemble size"),
    "tile_size_px": (("run", "tile_px"), "tile size (px)"),
    "calibration": (("calibration",), "calibration"),
    "channels": (("channels",), "channels (optional)"),
}
PAIRS = "OFFSET:SCALE"
"""The calibration choice that takes numbers (``OFFSET:SCALE[,OFFSET:SCALE]``) rather than a
mode."""


@dataclass(frozen=True)
class FieldSpec:
    """One widget field as the settings model defines it.

    Attributes
    ----------
    key : str
        The keyword of :func:`plugins.runner.build_settings` (and key of
        :func:`plugins.runner.config_fields`).
    path : tuple of str
        Where it lives in :class:`~pipeline.config.Settings` (``("run", "tile_px")``).
    label : str
        The widget's label.
    default : Any
        The model's default.
    choices : tuple of str
        The ``Literal`` values the field accepts (empty when it takes numbers only).
    minimum : int or float or None
        The ``ge`` bound.
    help : str
        The field's description (the tooltip), or "" when it has none.
    """

    key: str
    path: tuple[str, ...]
    label: str
    default: Any
    choices: tuple[str, ...]
    minimum: int | float | None
    help: str


def literal_choices(annotation: Any) -> tuple[str, ...]:
    """The ``Literal`` values inside a type, in their order (``X | Literal["a", "b"]`` gives
    ``("a", "b")``).

    >>> from typing import Literal
    >>> literal_choices(tuple[int, ...] | Literal["auto", "image"])
    ('auto', 'image')
    """
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(typing.get_args(annotation))
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found += [c for c in literal_choices(arg) if c not in found]
    return tuple(found)


def _field(model: type[BaseModel], path: tuple[str, ...]) -> FieldInfo:
    for name in path[:-1]:
        model = model.model_fields[name].annotation  # a nested settings section
    return model.model_fields[path[-1]]


def field_spec(key: str, model: type[BaseModel] | None = None) -> FieldSpec:
    """The :class:`FieldSpec` of the widget field ``key`` (a key of :data:`FIELDS`), from
    ``model`` (default :class:`~pipeline.config.Settings`)."""
    path, label = FIELDS[key]
    info = _field(model or Settings, path)
    minimum = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
    return FieldSpec(key=key, path=path, label=label, default=info.get_default(),
                     choices=literal_choices(info.annotation), minimum=minimum,
                     help=info.description or "")


def setting_labels() -> dict[str, str]:
    """Dotted setting name -> the widget's label, for the settings the widget shows
    (``{"uncertainty.ensemble_size": "ensemble size", ...}``)."""
    return {".".join(path): label for path, label in FIELDS.values()}
