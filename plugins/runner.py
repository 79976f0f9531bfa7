"""The run widget's engine: settings from the widget's fields, and a run as a stream of events.

:func:`run_folder` runs the Prefect flow of ``chromarate run`` (:func:`flows.flow.run`), so the
stores, ``OUT/run.json``, the CSV summaries, the skipping of finished images and the handling of
failing files are the command line's. It never imports a GUI: the widget drives it from a
``thread_worker``. Prefect is imported only when a run starts, after
:func:`flows.env.prefect_env_defaults` (the command line's defaults for the ephemeral API).

Examples
--------
>>> settings = build_settings(method="closed-form", device="cpu", calibration="100:0.001",
...                           tile_size_px=128)
>>> settings.device, settings.calibration[0].offset, settings.run.tile_px
('cpu', 100.0, 128)
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pipeline.config import Settings, load_settings
from pipeline.config_parse import parse_calibration, parse_channels
from pipeline.errors import InputError
from plugins.run_fields import ENSEMBLE_SECTION, setting_labels

__all__ = ["OtherSettingsError", "build_settings", "calibration_text", "config_fields",
           "default_out_dir", "other_settings_text", "run_folder"]

Method = Literal["closed-form", "neural"]
Device = Literal["auto", "cpu", "cuda"]


def default_out_dir(folder: str | os.PathLike[str]) -> Path:
    """Where results go unless chosen: ``<folder>_results`` beside the input.

    >>> default_out_dir("data/images").as_posix()
    'data/images_results'
    """
    folder = Path(folder)
    return folder.with_name(folder.name + "_results")


def build_settings(
    *,
    method: Method | None = None,
    device: Device | None = None,
    ensemble_size: int | None = None,
    tile_size_px: int | None = None,
    calibration: str | None = None,
    channels: str | None = None,
    config: str | os.PathLike[str] | None = None,
) -> Settings:
    """The :class:`pipeline.config.Settings` for the widget's fields.

    Parameters
    ----------
    method, device : str, optional
        As ``chromarate run --method/--device``; None: the settings file's, else the default
        of :class:`pipeline.config.Settings`.
    ensemble_size : int, optional
        ``uncertainty.ensemble_size`` (noise-resampled members per tile, whose spread gives
        λ std). None or 0: the default.
    tile_size_px : int, optional
        ``run.tile_px``, as ``--tile-size``. None or 0: the default.
    calibration : str, optional
        As ``--calibration``: a mode (``"image"``, ``"auto"``) or
        ``"OFFSET:SCALE[,OFFSET:SCALE]"``. None or empty: the settings file's, else the default.
    channels : str, optional
        As ``--channels``: one word per channel of the files (chromatin, heterochromatin or
        ignore), e.g. ``"chromatin,heterochromatin,ignore"``. None or empty: the settings
        file's, else from the files' channel names or channel count.
    config : path, optional
        A TOML or YAML settings file, as ``--config``; the fields above override it.

    Raises
    ------
    ValueError
        With the bad value quoted (pydantic's ``ValidationError`` is a ``ValueError``).
    """
    data: dict[str, Any] = {k: v for k, v in (("method", method), ("device", device))
                            if v is not None}
    if calibration and calibration.strip():
        data["calibration"] = parse_calibration(calibration)
    if channels and channels.strip():
        data["channels"] = parse_channels(channels)
    if ensemble_size:
        data[ENSEMBLE_SECTION] = {"ensemble_size": int(ensemble_size)}
    if tile_size_px:
        data["run"] = {"tile_px": int(tile_size_px)}
    config = Path(config) if config and str(config).strip() not in ("", ".") else None
    if config is not None and not config.is_file():
        raise ValueError(f"config file {str(config)!r} does not exist")
    return load_settings(config, **data)


def config_fields(config: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The run widget's fields that a settings file sets, as the widget shows them.

    Keys (only those the file gives): ``method``, ``device``, ``ensemble_size``,
    ``tile_size_px``, ``calibration`` (a mode such as ``"auto"``, or
    ``"OFFSET:SCALE[,...]"``) and ``channels`` (as ``--channels``).

    Raises
    ------
    ValueError
        For a missing file or bad settings (the value quoted).
    """
    config = Path(config) if config and str(config).strip() not in ("", ".") else None
    if config is None:
        return {}
    if not config.is_file():
        raise ValueError(f"config file {str(config)!r} does not exist")
    settings = load_settings(config)
    given = settings.model_dump(exclude_unset=True)
    found: dict[str, Any] = {k: getattr(settings, k) for k in ("method", "device") if k in given}
    if "ensemble_size" in given.get(ENSEMBLE_SECTION, {}):
        found["ensemble_size"] = getattr(settings, ENSEMBLE_SECTION).ensemble_size
    if "tile_px" in given.get("run", {}):
        found["tile_size_px"] = settings.run.tile_px
    if "calibration" in given:
        cal = settings.calibration
        found["calibration"] = calibration_text(cal)
    if given.get("channels"):
        found["channels"] = ",".join(settings.channels or ())
    return found


def calibration_text(cal: Any) -> str:
    """The calibration as ``--calibration`` takes it: a mode, or ``OFFSET:SCALE[,...]``.

    >>> calibration_text("auto"), calibration_text(parse_calibration("100:0.5"))
    ('auto', '100:0.5')
    """
    return cal if isinstance(cal, str) else ",".join(
        f"{c.offset:.10g}:{c.scale:.10g}" for c in cal)


class OtherSettingsError(InputError):
    """The results folder holds results made with other settings, and the run may not
    overwrite them; ``str()`` names each differing setting (see :func:`other_settings_text`)."""


def _plain(key: str, value: str) -> str:
    """A setting's JSON text (as :func:`flows.outdir.settings_differences` gives it) as the
    widget shows it: ``neural`` rather than ``"neural"``, calibration pairs as ``OFFSET:SCALE``.

    >>> _plain("method", '"neural"'), _plain("calibration", '[{"offset": 100.0, "scale": 0.5}]')
    ('neural', '100:0.5')
    """
    try:
        data = json.loads(value)
    except ValueError:
        return value
    if isinstance(data, str):
        return data
    if key == "calibration" and isinstance(data, list):
        try:
            return calibration_text(parse_calibration(
                ",".join(f"{pair['offset']}:{pair['scale']}" for pair in data)))
        except (TypeError, ValueError, KeyError):
            return value
    return value


def other_settings_text(out_dir: str | os.PathLike[str], settings: Settings) -> str | None:
    """Why a run with ``settings`` into ``out_dir`` would be refused, in plain words, or None.

    ``out_dir`` is refused (unless the run may overwrite) when it holds results made with
    other settings that change results (:func:`flows.outdir.settings_differences`, the check
    every run makes). The text names each differing setting (by the run widget's label where
    it shows the setting) with this run's value and the values recorded, and where, e.g.
    ``method is neural here but closed-form in run.json, cell.ome.zarr``.
    """
    from flows.outdir import settings_differences

    diffs = settings_differences(Path(out_dir), settings)
    if not diffs:
        return None
    labels = setting_labels()
    mine = settings.model_dump(mode="json")
    parts = []
    for key, values in sorted(diffs.items()):
        now: Any = mine
        for name in key.split("."):
            now = now.get(name) if isinstance(now, dict) else None
        held = " and ".join(
            f"{_plain(key, value)} in {', '.join(files[:3])}"
            + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            for value, files in values.items()
        )
        name = f"{labels[key]} ({key})" if labels.get(key, key) != key else key
        parts.append(f"{name} is {_plain(key, json.dumps(now))} here but {held}")
    return "it holds results made with other settings: " + "; ".join(parts)


def run_folder(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: Settings,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    overwrite: bool = False,
) -> Iterator[dict[str, Any]]:
    """Run the ``chromarate`` flow on ``folder`` into ``out_dir``, yielding its events.

    Events (dicts with ``"event"``):

    - ``starting`` (``total``, ``images``): the TIFFs were found; they are checked next, and
      Prefect starts only if some image is left to compute (its ephemeral API takes up to a
      minute the first time in a session);
    - ``start`` (``total``, ``images``): the flow runs;
    - ``stage`` (``image``, ``stage``, ...): a task began a stage (``ingest``, ``denoise``,
      ``fit``, ``tiles`` with ``done``/``total``, ``segment``); only from tasks in this process;
    - ``done`` / ``skipped`` (``image``, ``store``, ``count``) and ``failed`` (``image``,
      ``reason``, ``count``): an image finished; ``count`` of ``total`` have;
    - last, ``finished`` (``out``, ``stores``, ``failed``, ``cancelled``, ``record``: the
      ``run.json`` record, None when cancelled).

    Parameters
    ----------
    folder : path
        A folder of TIFFs, or one TIFF.
    out_dir : path
        The results folder (created).
    settings : Settings
        From :func:`build_settings`.
    should_stop : callable
        Polled while the flow waits on its tasks; True cancels the run: no new image or stage
        starts, the stage already running ends first, finished stores stay and no partial
        store is left (stores are written atomically). ``run.json`` is not written.
    overwrite : bool
        As ``chromarate run --overwrite``: replace results in ``out_dir`` made with other
        settings. Without it such a folder is refused and nothing is written.

    Raises
    ------
    pipeline.io.InputError
        If ``folder`` holds no TIFF, or (without ``overwrite``) ``out_dir`` holds results made
        with other settings (the message is :func:`other_settings_text`'s); before Prefect
        starts and before anything is written.
    Exception
        Whatever stops the flow as a whole (a failing image does not: it is an event).
    """
    from pipeline.io import discover_tiffs

    folder, out_dir = Path(folder), Path(out_dir)
    images = [folder] if folder.is_file() else discover_tiffs(folder, recursive=settings.recursive)
    if not overwrite and (text := other_settings_text(out_dir, settings)):
        raise OtherSettingsError(out_dir, text, "Tick “overwrite” to replace them, or choose "
                                 "another results folder")
    names = [str(p) for p in images]
    yield {"event": "starting", "total": len(images), "images": names}

    from flows.env import prefect_env_defaults

    prefect_env_defaults()
    from flows.flow import RunCancelled, run
    from flows.tasks import set_progress_sink

    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    closing = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["record"] = run(folder, out_dir, settings, progress=events.put,
                                    cancel=lambda: closing.is_set() or should_stop(),
                                    overwrite=overwrite)
        except BaseException as exc:  # handed to the consumer below
            outcome["error"] = exc
        finally:
            events.put(None)

    stores: list[str] = []
    failed: list[dict[str, str]] = []
    set_progress_sink(lambda ev: events.put({"event": "stage", **ev}))
    thread = threading.Thread(target=work, name="chromarate-flow", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not None:
            if event["event"] in ("done", "skipped"):
                stores.append(event["store"])
            elif event["event"] == "failed":
                failed.append({"image": event["image"], "reason": event["reason"]})
            if event["event"] in ("done", "skipped", "failed"):
                event = {**event, "count": len(stores) + len(failed)}
            yield event
    finally:  # normal end, or the consumer stopped early: never leave the flow running
        closing.set()
        thread.join()
        set_progress_sink(None)
    error = outcome.get("error")
    if error is not None and not isinstance(error, RunCancelled):
        raise error
    record = outcome.get("record")
    yield {
        "event": "finished",
        "out": str(out_dir),
        "stores": stores if record is None else [i["store"] for i in record["images"]],
        "failed": failed if record is None else record["failed"],
        "cancelled": record is None,
        "record": record,
    }
