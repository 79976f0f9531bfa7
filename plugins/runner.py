"""The run widget's engine: settings from the widget's fields, and a run as a stream of events.

:func:`run_folder` is the one place the plugin starts work. Today it calls
:func:`pipeline.process.process_image` per file (as ``chromarate run`` does) and writes
``OUT/run.json``; when the Prefect flow lands only this function changes. It never imports a
GUI: the widget drives it from a ``thread_worker``.

Examples
--------
>>> settings, notes = build_settings(method="closed-form", device="cpu", calibration="100:0.001")
>>> settings.device, settings.calibration[0].offset, notes
('cpu', 100.0, [])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pipeline.config import Settings, load_settings, parse_calibration

__all__ = ["RunCancelled", "build_settings", "default_out_dir", "run_folder"]

Method = Literal["closed-form", "neural"]
Device = Literal["auto", "cpu", "cuda"]

# names the settings model may give these options (the flow and the neural fit add them)
_ENSEMBLE_NAMES = ("ensemble_size", "ensemble", "n_ensemble", "n_models")
_TILE_NAMES = ("tile_size_px", "tile_px", "tile_size", "tile")


class RunCancelled(Exception):
    """Raised inside a run when the user pressed cancel."""


def default_out_dir(folder: str | os.PathLike[str]) -> Path:
    """Where results go unless chosen: ``<folder>_results`` beside the input.

    >>> default_out_dir("data/images").as_posix()
    'data/images_results'
    """
    folder = Path(folder)
    return folder.with_name(folder.name + "_results")


def _place(data: dict[str, Any], names: tuple[str, ...], value: Any) -> bool:
    """Put ``value`` under the first of ``names`` the settings model knows (top level or one
    nested model down); False if it knows none."""
    fields = Settings.model_fields
    for name in names:
        if name in fields:
            data[name] = value
            return True
    for outer, info in fields.items():
        sub = getattr(info.annotation, "model_fields", None)
        if not sub:
            continue
        for name in names:
            if name in sub:
                data.setdefault(outer, {})[name] = value
                return True
    return False


def build_settings(
    *,
    method: Method = "closed-form",
    device: Device = "auto",
    ensemble_size: int | None = None,
    tile_size_px: int | None = None,
    calibration: str = "auto",
    config: str | os.PathLike[str] | None = None,
) -> tuple[Settings, list[str]]:
    """The :class:`pipeline.config.Settings` for the widget's fields.

    Parameters
    ----------
    method, device : str
        As ``chromarate run --method/--device``.
    ensemble_size, tile_size_px : int, optional
        Passed on when the settings model has such a field; otherwise named in the notes.
        None or 0 leaves the default.
    calibration : str
        ``"auto"`` or ``"OFFSET:SCALE[,OFFSET:SCALE]"``.
    config : path, optional
        A TOML or YAML settings file, as ``--config``; the fields above override it.

    Returns
    -------
    (Settings, list of str)
        The validated settings and notes on options this version does not use.

    Raises
    ------
    ValueError
        With the bad value quoted (pydantic's ``ValidationError`` is a ``ValueError``).
    """
    data: dict[str, Any] = {"method": method, "device": device}
    if calibration and calibration.strip().lower() != "auto":
        data["calibration"] = parse_calibration(calibration)
    notes = []
    for label, names, value in (
        ("ensemble size", _ENSEMBLE_NAMES, ensemble_size),
        ("tile size", _TILE_NAMES, tile_size_px),
    ):
        if value and not _place(data, names, int(value)):
            notes.append(f"{label} {value} is not used by this version of chromarate")
    config = Path(config) if config and str(config).strip() not in ("", ".") else None
    if config is not None and not config.is_file():
        raise ValueError(f"config file {str(config)!r} does not exist")
    return load_settings(config, **data), notes


def run_folder(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: Settings,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[dict[str, Any]]:
    """Process every TIFF in ``folder`` into ``out_dir``, yielding an event per step.

    Events (dicts with ``"event"``): ``start`` (``total``, ``images``), ``image`` (``index``,
    ``image``: about to start), ``done`` (``index``, ``image``, ``store``), ``failed``
    (``index``, ``image``, ``reason``), and last ``finished`` (``out``, ``stores``,
    ``failed``, ``cancelled``). Files that cannot be read fail alone; the others go on.
    ``OUT/run.json`` is written at the end, as by ``chromarate run``.

    Parameters
    ----------
    folder : path
        A folder of TIFFs, or one TIFF.
    out_dir : path
        The results folder (created).
    settings : Settings
        From :func:`build_settings`.
    should_stop : callable
        Polled between images and between planes; True cancels the run. Stores already
        written stay; the one in progress is not written (writes are atomic).

    Raises
    ------
    pipeline.io.InputError
        If ``folder`` holds no TIFF.
    """
    from pipeline.io import InputError, discover_tiffs
    from pipeline.io.atomic import atomic_write_text, clean_partials
    from pipeline.process import process_image

    folder, out_dir = Path(folder), Path(out_dir)
    images = [folder] if folder.is_file() else discover_tiffs(folder, recursive=settings.recursive)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_partials(out_dir)
    yield {"event": "start", "total": len(images), "images": [str(p) for p in images]}

    def check(_event: dict[str, Any] | None = None) -> None:
        if should_stop():
            raise RunCancelled("cancelled by the user")

    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    cancelled = False
    for index, image in enumerate(images):
        try:
            check()
            yield {"event": "image", "index": index, "image": str(image)}
            record = process_image(image, out_dir, settings, progress=check)
        except RunCancelled:
            cancelled = True
            break
        except (InputError, ValueError, NotImplementedError) as exc:
            failed.append({"image": str(image), "reason": str(exc)})
            yield {"event": "failed", "index": index, "image": str(image), "reason": str(exc)}
            continue
        done.append(record)
        yield {"event": "done", "index": index, "image": str(image), "store": record["store"]}
    atomic_write_text(
        out_dir / "run.json",
        json.dumps(
            {"settings": settings.model_dump(mode="json"), "images": done, "failed": failed,
             "cancelled": cancelled},
            indent=2,
            default=str,
        ),
    )
    yield {
        "event": "finished",
        "out": str(out_dir),
        "stores": [r["store"] for r in done],
        "failed": failed,
        "cancelled": cancelled,
    }
