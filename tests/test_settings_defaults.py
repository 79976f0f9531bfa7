"""No second set of defaults: a function (or model class) of the modules that compute results
(``pipeline.cache.RESULT_SOURCES``) whose parameter is a setting defaults to the setting's
own default, so that calling it without the argument gives what a run with default settings
computes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from pydantic import BaseModel

import pipeline
from pipeline.cache import RESULT_SOURCES
from pipeline.config import Settings

# parameters named differently from their setting, or named like another section's setting
RENAMED = {
    ("pipeline.denoise", "calibrate", "method"): "run.denoise",
    ("pipeline.segment", "segment_domains", "domain_sigma_um"): "segmentation.domain_sigma_um",
    ("pipeline.segment", "segment_domains", "min_area_um2"): "segmentation.domain_min_area_um2",
}
# names that mean something else where they appear as parameters (a method of another kind,
# a threshold value, an area of another object): compared only through RENAMED
AMBIGUOUS = {"method", "threshold", "min_area_um2", "max_area_um2", "split", "segment",
             "calibration", "channels", "device", "axes", "epochs", "lr", "hidden"}


def _defaults(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _defaults(ann, f"{prefix}{name}.")
        else:
            out[prefix + name] = field.default
    return out


def _callables(module: Any):
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, BaseModel):
            yield name, obj
            for meth, fn in vars(obj).items():
                if inspect.isfunction(fn):
                    yield f"{name}.{meth}", fn


def test_library_defaults_are_the_settings_defaults():
    defaults = _defaults(Settings)
    by_name: dict[str, list[str]] = {}
    for path in defaults:
        by_name.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    checked, wrong = [], []
    for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        rel = info.name.removeprefix("pipeline.").replace(".", "/")
        if not any(rel == e.removesuffix(".py") or rel.startswith(e + "/")
                   for e in RESULT_SOURCES):
            continue
        module = importlib.import_module(info.name)
        for qual, fn in _callables(module):
            try:
                params = inspect.signature(fn).parameters.values()
            except (TypeError, ValueError):
                continue
            for p in params:
                if p.default is inspect.Parameter.empty or p.default is None:
                    continue
                path = RENAMED.get((info.name, qual, p.name))
                if path is None and p.name not in AMBIGUOUS and len(by_name.get(p.name, ())) == 1:
                    path = by_name[p.name][0]
                if path is None:
                    continue
                checked.append(f"{info.name}.{qual}({p.name})")
                if p.default != defaults[path]:
                    wrong.append(f"{info.name}.{qual}({p.name}={p.default!r}) but {path} = "
                                 f"{defaults[path]!r}")
    assert not wrong, wrong
    # the ones this test exists for are seen (a rename would silently skip them)
    for name in ("pipeline.physics.chromatin.ChromatinModel(phi_max)",
                 "pipeline.physics.chromatin.ChromatinModel(interface_length_um)",
                 "pipeline.physics.observation.to_fields(phi_max)",
                 "pipeline.physics.observation.auto_calibration(phi_max)",
                 "pipeline.calibration.image_calibration(interface_length_um)",
                 "pipeline.segment.segment_domains(domain_sigma_um)",
                 "pipeline.segment.segment_domains(min_area_um2)",
                 "pipeline.denoise.calibrate(method)", "pipeline.denoise.calibrate(anscombe)"):
        assert name in checked, name
