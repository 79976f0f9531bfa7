"""Settings say which of them change results (``pipeline.config_meta``): the cache key and the
results folder's settings check follow the fields' metadata, and an unmarked field counts as
one that changes results."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

from flows.outdir import settings_differences
from pipeline.config import (
    RunSettings,
    Settings,
    affects_results,
    no_effect,
    no_effect_exclude,
    no_effect_paths,
)
from pipeline.process import image_key


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.tif"
    path.write_bytes(b"any content: the key hashes the bytes")
    return path


def _parts(ann: Any) -> list[Any]:
    return list(typing.get_args(ann)) if typing.get_origin(ann) in (typing.Union,
                                                                     type(int | None)) else [ann]


def _example(ann: Any) -> Any:
    """A value of type ``ann`` (one part of a union)."""
    if typing.get_origin(ann) is Literal:
        return typing.get_args(ann)[0]
    if typing.get_origin(ann) is tuple:
        return (_example(typing.get_args(ann)[0]),)
    return {bool: True, int: 3, float: 0.625, str: "x", Path: Path("x")}[ann]


def _other(field: FieldInfo, value: Any) -> Any:
    """A value of the field's type that differs from ``value`` (validators aside)."""
    parts = [p for p in _parts(field.annotation) if p is not type(None)]
    literals = [v for p in parts if typing.get_origin(p) is Literal for v in typing.get_args(p)]
    if value in literals and len(literals) > 1:
        return next(v for v in literals if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + 2
    if isinstance(value, str) and not literals:
        return value + "x"
    if isinstance(value, tuple) and value:
        return value + value
    other = next(p for p in parts if typing.get_origin(p) is not Literal)
    return _example(other)


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and affects_results(field):
            out += _leaves(ann, f"{prefix}{name}.")
        else:
            out.append((prefix + name, field))
    return out


def _changed(settings: BaseModel, path: str, field: FieldInfo) -> BaseModel:
    """``settings`` with the setting at ``path`` set to another value (not validated: the
    cluster options' validators tie them to each other)."""
    head, _, rest = path.partition(".")
    if rest:
        section = getattr(settings, head)
        sub_field = type(section).model_fields[rest.split(".")[0]]
        return settings.model_copy(update={head: _changed(section, rest, sub_field)})
    return settings.model_copy(update={head: _other(field, getattr(settings, head))})


def test_the_run_and_cluster_options_do_not_change_results():
    """The fields marked today: where a run executes and where it looks for inputs."""
    paths = no_effect_paths(Settings)
    assert {"recursive", "run.workers", "run.cluster", "run.scheduler_address",
            "run.tls_ca_file", "run.slurm_jobs"} <= paths
    for path in ("method", "seed", "device", "run.tile_px", "run.denoise", "run.segment",
                 "physics.phi_max", "estimator.delta_um", "segmentation.domain_sigma_um"):
        assert path not in paths, path


def test_every_setting_is_in_the_key_unless_marked(image: Path, tmp_path: Path):
    """Each leaf setting changed on its own: a field marked no-effect leaves the key and the
    results folder's settings check alone; every other field changes both."""
    base = Settings()
    key = image_key(image, base)
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings": base.model_dump(mode="json")}))
    marked = no_effect_paths(Settings)
    leaves = _leaves(Settings)
    assert len(leaves) > 60 and {p for p, _ in leaves} >= marked
    for path, field in leaves:
        other = _changed(base, path, field)
        assert other.model_dump(mode="json") != base.model_dump(mode="json"), path
        if path in marked:
            assert image_key(image, other) == key, path
            assert settings_differences(out, other) == {}, path
        else:
            assert image_key(image, other) != key, path
            assert path in settings_differences(out, other), path


def test_a_new_field_without_the_mark_changes_results(image: Path):
    """A field added to a settings model, at the top or in a section, without ``no_effect``:
    it counts as changing results (the safe default); with the mark it does not."""
    run_plus = create_model("RunPlus", __base__=RunSettings, knob=(int, 1),
                            quiet_knob=(int, no_effect(1)))
    plus = create_model("SettingsPlus", __base__=Settings, knob=(float, 0.5),
                        quiet_knob=(float, no_effect(0.5)), run=(run_plus, run_plus()))
    excluded = no_effect_exclude(plus)
    assert "knob" not in excluded and "knob" not in excluded["run"]
    assert excluded["quiet_knob"] is True and excluded["run"]["quiet_knob"] is True
    assert excluded["run"]["workers"] is True  # inherited marks stay
    base = plus()
    key = image_key(image, base)
    assert image_key(image, base.model_copy(update={"knob": 0.75})) != key
    assert image_key(image, base.model_copy(update={"run": run_plus(knob=2)})) != key
    assert image_key(image, base.model_copy(update={"quiet_knob": 0.75})) == key
    assert image_key(image, base.model_copy(update={"run": run_plus(quiet_knob=2)})) == key


def test_the_mark_is_in_the_schema():
    """The JSON schema of the settings carries the mark (for tools and the docs)."""
    schema = RunSettings.model_json_schema()["properties"]
    assert schema["workers"]["affects_results"] is False
    assert "affects_results" not in schema["tile_px"]


def test_a_dark_frame_enters_the_key_with_its_content(image: Path, tmp_path: Path):
    """The dark frame is a file named in the settings: replacing it under the same name
    changes the key (its path alone would keep results made with the old frame)."""
    dark = tmp_path / "dark.tif"
    dark.write_bytes(b"first dark frame")
    settings = Settings(dark_frame=dark)
    key = image_key(image, settings)
    assert key != image_key(image, Settings())
    assert image_key(image, settings) == key
    dark.write_bytes(b"a new dark frame, same name")
    assert image_key(image, settings) != key
