"""Prefect tasks over the stages of :mod:`pipeline.process`: paths and manifests in and out.

Ingest (inspecting each file) and the summaries run in process, outside these tasks
(:func:`flows.flow.plan_run`), so that refused files and up-to-date images are known before
Prefect starts.

Caching is content-addressed on disk, not in Prefect's result store: each stage's output is
named by the image key (input content, settings, code version), so a re-run, or a run after
``kill -9``, finds what is finished however Prefect's own state was lost. Tasks therefore use
``cache_policy=NO_CACHE`` and keep no Prefect result (``persist_result=False``): Prefect
stores only run metadata, in its own database, and every file a run writes lies under ``OUT``,
so runs into different folders share no files. I/O stages retry, except
on a refused input (:class:`pipeline.io.InputError`), which would fail the same way again.
Every failure names its file (:class:`~pipeline.io.InputError`,
:class:`pipeline.process.ImageError`).

Progress events go to :func:`set_progress_sink` (a callable in this process, such as the CLI's
progress bar) and to the task's logger at debug level (visible from dask workers too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline import process
from pipeline.config import Settings
from pipeline.io import InputError
from pipeline.manifest import ImageManifest

__all__ = [
    "allow_tasks",
    "assemble_task",
    "denoise_task",
    "emit",
    "fit_task",
    "segment_task",
    "set_progress_sink",
    "stop_tasks",
    "TaskStopped",
]

log = logging.getLogger(__name__)
_SINK: Callable[[dict], None] | None = None
# output folders whose run was cancelled: their running tasks stop at the next progress point
# (one run per folder at a time: flows/outdir.py's lock, so the folder names the run)
_STOPPED: set[str] = set()


class TaskStopped(RuntimeError):
    """A running task stopped at a progress point because its run was cancelled."""


def _run_key(out: str | Path) -> str:
    return str(Path(out).resolve())


def stop_tasks(out: str | Path) -> None:
    """Ask the tasks of the run writing to ``out`` that are still running in this process to
    stop at their next progress point (a tile batch, an epoch of the neural fit). A denoise
    reports progress only as it starts, so a running one finishes; tasks on other processes
    (dask workers) finish their stage."""
    _STOPPED.add(_run_key(out))


def allow_tasks(out: str | Path) -> None:
    """Clear :func:`stop_tasks` for ``out`` (a new run starts there)."""
    _STOPPED.discard(_run_key(out))


def set_progress_sink(sink: Callable[[dict], None] | None) -> None:
    """Receive every progress event of tasks running in this process (None to stop)."""
    global _SINK
    _SINK = sink


def emit(event: dict[str, Any]) -> None:
    """Send one progress event to the sink (if any) and the run logger."""
    if _SINK is not None:
        try:
            _SINK(event)
        except Exception:  # a broken display must never fail the run
            log.debug("progress sink failed", exc_info=True)
    try:
        get_run_logger().debug("%s", event)
    except Exception:  # outside a run context
        log.debug("%s", event)


def _progress(manifest: ImageManifest) -> Callable[[dict], None]:
    name = manifest.image
    key = _run_key(Path(manifest.store).parent)

    def report(event: dict[str, Any]) -> None:
        if key in _STOPPED:
            raise TaskStopped(f"{name}: the run was cancelled")
        emit({"image": name, **event})

    return report


def _retry_unless_refused(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures only: a refused input (InputError) fails the same way again."""
    exc = getattr(state, "data", None)
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # no result to look at: retry as before
            return True
    stopped = isinstance(exc, TaskStopped) or isinstance(getattr(exc, "__cause__", None),
                                                         TaskStopped)
    return not (isinstance(exc, InputError) or stopped)


_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False,
                         "retry_condition_fn": _retry_unless_refused}


def _timed_stage(manifest: ImageManifest, stage: str, run: Callable[[], str]
                 ) -> dict[str, Any]:
    """Announce ``stage`` of one image, run it: its output path and how long it took."""
    t = time.perf_counter()
    emit({"image": manifest.image, "stage": stage})
    path = run()
    return {"path": path, "seconds": time.perf_counter() - t}


@task(name="denoise", retries=1, retry_delay_seconds=1, **_OPTS)
def denoise_task(manifest: ImageManifest, settings: Settings) -> dict[str, Any]:
    return _timed_stage(manifest, "denoise", lambda: process.denoise_image(
        manifest, settings, progress=_progress(manifest)))


@task(name="fit", **_OPTS)
def fit_task(manifest: ImageManifest, settings: Settings, denoised: dict[str, Any]
             ) -> dict[str, Any]:
    return _timed_stage(manifest, "fit", lambda: process.fit_image(
        manifest, settings, denoised["path"], progress=_progress(manifest)))


@task(name="segment", **_OPTS)
def segment_task(manifest: ImageManifest, settings: Settings, fit: dict[str, Any]
                 ) -> dict[str, Any]:
    return _timed_stage(manifest, "segment", lambda: process.segment_image(
        manifest, settings, fit["path"]))


@task(name="assemble", retries=2, retry_delay_seconds=1, **_OPTS)
def assemble_task(manifest: ImageManifest, settings: Settings, denoised: dict[str, Any],
                  fit: dict[str, Any], segment: dict[str, Any]) -> dict[str, Any]:
    """Write the final store atomically (the step that makes an image 'finished'); its path
    and seconds (the store records the stages before it)."""
    timings = {"denoise": denoised["seconds"], "fit": fit["seconds"],
               "segment": segment["seconds"]}
    t0 = time.perf_counter()
    store = process.assemble(manifest, settings, denoised["path"], fit["path"],
                             segment["path"], timings=timings)
    emit({"image": manifest.image, "stage": "done"})
    return {"path": store, "seconds": time.perf_counter() - t0}
