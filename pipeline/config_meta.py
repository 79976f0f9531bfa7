"""What the settings say about themselves: which of them change results.

A setting changes results unless its field says otherwise: a field declared with
:func:`no_effect` (``json_schema_extra={"affects_results": False}``) only says how a run
executes (workers, the dask cluster, TLS files, where to look for inputs). Everything else,
including a field added later without thought, enters each image's cache key
(:func:`pipeline.process.image_key`) and the comparison of a results folder's settings
(:mod:`flows.outdir`): a forgotten mark costs a re-run, never a stale result.

>>> from pipeline.config import Settings
>>> no_effect_exclude(Settings)["run"]["workers"], "seed" in no_effect_exclude(Settings)
(True, False)
>>> sorted(no_effect_paths(Settings))[:3]
['recursive', 'run.cluster', 'run.scheduler_address']
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

__all__ = ["AFFECTS_RESULTS", "affects_results", "no_effect", "no_effect_exclude",
           "no_effect_paths"]

AFFECTS_RESULTS = "affects_results"
"""The key, in a field's ``json_schema_extra``, that marks a setting as not changing results
(``False``); it also appears in the settings' JSON schema."""


def no_effect(default: Any = ..., **kwargs: Any) -> Any:
    """``pydantic.Field(default, **kwargs)`` for a setting that does not change results."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    return Field(default, json_schema_extra={**extra, AFFECTS_RESULTS: False}, **kwargs)


def affects_results(field: FieldInfo) -> bool:
    """Whether a field changes results: True unless it is marked with :func:`no_effect`."""
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get(AFFECTS_RESULTS) is False)


def _section(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def no_effect_exclude(model: type[BaseModel]) -> dict[str, Any]:
    """The settings of ``model`` that do not change results, as ``model_dump``'s ``exclude``:
    ``{name: True}`` for a marked field, ``{section: {...}}`` for marked fields of a section
    (a field whose type is itself a settings model)."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if not affects_results(field):
            out[name] = True
        elif (section := _section(field)) is not None and (sub := no_effect_exclude(section)):
            out[name] = sub
    return out


def no_effect_paths(model: type[BaseModel]) -> frozenset[str]:
    """The same settings as dotted names (``run.workers``), as in a flattened record."""

    def walk(tree: dict[str, Any], prefix: str) -> list[str]:
        return [p for k, v in tree.items()
                for p in ([prefix + k] if v is True else walk(v, f"{prefix}{k}."))]

    return frozenset(walk(no_effect_exclude(model), ""))
