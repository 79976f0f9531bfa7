"""The ``run`` options that set a field of :class:`pipeline.config.Settings`.

Each option is generated from its settings field: choices from a ``Literal``, the type (a
number or a word: ``float | Literal["auto"]``), help from the description and the default
shown. The parsed command line becomes the settings (a config file's values overridden by the
options given), and a settings error becomes plain sentences.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["SETTING_OPTIONS", "add_setting_options", "setting_field", "settings_from_args",
           "settings_message", "value_type"]

# `run` options that set a field of pipeline.config.Settings: (flag, field path, argparse
# keywords). Choices, type, help and the default shown in help come from the field
# (add_setting_options); "help" here replaces the field's description where the flag reads
# differently (a negative flag), "parse" turns the text into the field's value.
SETTING_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--method", "method", {}),
    ("--channels", "channels", {"parse": "channels", "metavar": "ROLES"}),
    ("--calibration", "calibration", {"parse": "calibration", "metavar": "OFFSET:SCALE"}),
    ("--dark-frame", "dark_frame", {"metavar": "TIFF"}),
    ("--flat-field", "flat_field", {"metavar": "TIFF"}),
    ("--defect-pixels", "defect_pixels", {}),
    ("--channel-offset", "channel_offset_um", {"parse": "offset", "metavar": "DY,DX"}),
    ("--calibration-check", "calibration_check", {}),
    ("--calibration-uncertainty", "uncertainty.calibration_scale", {"metavar": "FRACTION"}),
    ("--calibrate-planes", "calibrate_planes", {}),
    ("--pixel-size", "pixel_size_um", {"metavar": "UM"}),
    ("--delta", "estimator.delta_um", {"metavar": "UM"}),
    ("--window", "estimator.window_um", {"metavar": "UM"}),
    ("--device", "device", {}),
    ("--recursive", "recursive", {}),
    ("--seed", "seed", {}),
    ("--denoise", "run.denoise", {}),
    ("--tile-size", "run.tile_px", {"metavar": "PX"}),
    ("--overlap", "run.overlap_px", {"metavar": "PX"}),
    ("--workers", "run.workers", {"metavar": "N"}),
    ("--cluster", "run.cluster", {}),
    ("--scheduler-address", "run.scheduler_address", {"metavar": "ADDRESS"}),
    ("--no-segment", "run.segment", {"help": "report rates over the whole field (no nucleus "
                                     "segmentation)"}),
    ("--nuclei", "run.nuclei_dir", {"metavar": "LABELS_DIR"}),
    ("--axes", "run.axes", {}),
    ("--z-step", "run.z_step_um", {"metavar": "UM"}),
)


def setting_field(path: str) -> Any:
    """The pydantic ``FieldInfo`` of a dotted settings path (``run.tile_px``)."""
    from pipeline.config import Settings

    model: Any = Settings
    *sections, name = path.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[name]


def value_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """``(type, choices)`` for argparse from a field's annotation: a Literal gives choices;
    a number or a word (``float | Literal["auto"]``) gives a converter that accepts both."""
    import typing

    parts = [a for a in (typing.get_args(annotation) if typing.get_origin(annotation) in
                         (typing.Union, type(int | None)) else (annotation,))
             if a is not type(None)]
    words = [w for a in parts if typing.get_origin(a) is typing.Literal
             for w in typing.get_args(a)]
    kinds = [a for a in parts if typing.get_origin(a) is not typing.Literal]
    if not kinds:
        return str, words
    kind = kinds[0] if kinds[0] in (int, float, Path) else str
    if not words:
        return kind, None

    def convert(text: str) -> Any:
        return text if text in words else kind(text)

    convert.__name__ = f"{kind.__name__} or {'/'.join(map(str, words))}"
    return convert, None


def _shown(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else (
        str(value))


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """Add :data:`SETTING_OPTIONS` to ``parser``, each from its settings field. Every option
    defaults to None (not given: the config file's value or the model's default applies)."""
    for flag, path, extra in SETTING_OPTIONS:
        field, opts = setting_field(path), dict(extra)
        opts.pop("parse", None)
        text = opts.pop("help", None) or field.description or ""
        dest = path.rsplit(".", 1)[-1]
        if field.annotation is bool:  # a switch that sets the opposite of the default
            action = "store_false" if field.default else "store_true"
            shown = f"{dest} {_shown(field.default)}" if field.default else "off"
            parser.add_argument(flag, dest=dest, action=action, default=None,
                                help=f"{text} (default: {shown})")
            continue
        kind, choices = value_type(field.annotation)
        if "parse" in extra:
            kind = str
        if field.default is not None:
            text = f"{text} (default: {_shown(field.default)})"
        parser.add_argument(flag, dest=dest, type=kind, choices=choices, default=None,
                            help=text.replace("%", "%%"), **opts)


def settings_from_args(args: argparse.Namespace):
    from pipeline.config import load_settings
    from pipeline.config_parse import parse_calibration, parse_channels, parse_offset

    parsers = {"channels": parse_channels, "calibration": parse_calibration,
               "offset": parse_offset}
    overrides: dict[str, Any] = {}
    for _, path, extra in SETTING_OPTIONS:
        value = getattr(args, path.rsplit(".", 1)[-1], None)
        if value is None:
            continue
        if "parse" in extra:
            value = parsers[extra["parse"]](value)
        *sections, name = path.split(".")
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return load_settings(args.config, **overrides)


def settings_message(exc: Any) -> str:
    """A pydantic ValidationError as plain sentences (no URL, no internal types)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid settings: " + "; ".join(parts)
