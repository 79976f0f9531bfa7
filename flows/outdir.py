"""The results folder of a run, checked before anything is written to it.

- :func:`check_not_inside`: an output folder inside the input folder is refused.
- :func:`check_settings`: a folder that holds results made with other settings is refused,
  naming the settings that differ, unless the caller passes ``overwrite`` (``--overwrite``);
  a refused run writes nothing.
- :func:`check_out`: a folder that cannot be created or written is refused.
- :func:`out_lock`: held while a run writes, so that two runs into one folder never delete
  each other's partial outputs.

:func:`flows.flow.run` (every caller: the CLI, the napari run widget, code) calls them in
that order, before Prefect starts. Nothing here imports Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["check_not_inside", "check_out", "check_settings", "out_lock",
           "settings_differences"]


def check_not_inside(input: Path, out: Path) -> None:
    """Refuse an output folder that is the input folder or lies inside it (when the input is a
    folder): results there could be taken for inputs by later runs and tools, and a copy of
    the input folder would carry them."""
    from pipeline.io import InputError

    if not input.is_dir():
        return
    src, dst = input.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise InputError(out, f"the results folder is inside the input folder {input}",
                         "Pass --out a folder outside the input folder, e.g. "
                         f"{src.parent / (src.name + '_results')}")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return flat


def _result_settings(settings_json: dict[str, Any]) -> dict[str, Any]:
    """The settings that change results (those that enter an image's key), flattened: all but
    the fields marked :func:`~pipeline.config_meta.no_effect` in :class:`pipeline.config.Settings`
    (a recorded setting this version does not know counts as one that changes results)."""
    from pipeline.config import Settings, no_effect_paths

    skip = no_effect_paths(Settings)
    return {k: v for k, v in _flat(settings_json).items()
            if not any(k == p or k.startswith(p + ".") for p in skip)}


def _recorded_settings(out: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, settings)`` of ``OUT/run.json`` and of every result store in ``out``."""
    run_json = out / "run.json"
    if run_json.is_file():
        try:
            settings = json.loads(run_json.read_text()).get("settings")
        except (OSError, ValueError):
            settings = None
        if isinstance(settings, dict):
            yield "run.json", settings
    from pipeline.io.omezarr_read import result_store_record

    for store in sorted(out.glob("*.ome.zarr")):
        settings = (result_store_record(store) or {}).get("settings")
        if isinstance(settings, dict):  # else not a chromarate result: the run leaves it alone
            yield store.name, settings


def settings_differences(out: Path, settings: Any) -> dict[str, dict[str, list[str]]]:
    """Result-changing settings of ``settings`` that differ from those recorded in ``out``.

    Returns ``{"method": {'"neural"': ["run.json", "a.ome.zarr"]}, ...}``: per setting, each
    recorded value with the files that hold it. Settings that do not change results (workers,
    cluster, ...) and settings one side does not know (another version) are not compared.
    """
    if not out.is_dir():
        return {}
    mine = _result_settings(settings.model_dump(mode="json"))
    diffs: dict[str, dict[str, list[str]]] = {}
    for name, recorded in _recorded_settings(out):
        for key, value in _result_settings(recorded).items():
            if key in mine and mine[key] != value:
                diffs.setdefault(key, {}).setdefault(value, []).append(name)
    return diffs


def check_settings(out: Path, settings: Any, *, overwrite: bool = False) -> None:
    """Refuse a results folder that holds results made with other settings (unless
    ``overwrite``): a re-run would replace them, and the folder's tables would mix runs."""
    from pipeline.io import InputError

    diffs = settings_differences(out, settings)
    if not diffs or overwrite:
        return
    mine = _result_settings(settings.model_dump(mode="json"))
    parts = []
    for key, values in sorted(diffs.items()):
        held = "; ".join(f"{v} in {_files(names)}" for v, names in values.items())
        parts.append(f"{key} = {mine[key]} now, {held}")
    raise InputError(out, "it holds results made with other settings (" + "; ".join(parts)
                     + ")", "Pass --overwrite to replace them, or choose another --out")


def _files(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_out(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work starts."""
    from pipeline.io import InputError

    if out.exists() and not out.is_dir():
        raise InputError(out, "the output path is a file, not a folder",
                         "Pass --out a folder (it is created if missing)")
    probe = out / f".write-test.partial-{uuid.uuid4().hex}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(out, f"the output folder cannot be written ({exc.strerror or exc})",
                         "Choose a folder you can write to with --out, or fix its "
                         "permissions") from exc


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.chromarate/run.lock`` for the run: a second run into ``out`` is refused.

    Two runs into one folder would delete each other's partial outputs. Uses ``flock``,
    which the OS releases when the process ends, even on ``kill -9``; where there is no
    ``fcntl`` (Windows) nothing is locked.
    """
    from pipeline.io import InputError
    from pipeline.process import WORK_DIR

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = out / WORK_DIR / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InputError(out, f"another chromarate run ({holder}) is writing to this "
                             "folder now", "Wait for it to finish, or pass another --out"
                             ) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
