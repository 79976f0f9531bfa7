"""The ``chromarate`` Prefect flow: a folder of TIFFs to rate maps and tables.

Per image: ingest → denoise → fit → segment → assemble (see :mod:`flows.tasks`), all images
submitted at once to the task runner chosen by :mod:`flows.cluster`. Finished images are
skipped, a failing image is recorded and never stops the others, and the run ends with the
CSV summaries and ``OUT/run.json``.

Optional hooks, for a caller that shows progress or lets the user stop (the napari run
widget): ``progress`` receives an event per image from the flow's own loop (in the caller's
thread), and ``cancel`` is polled while the loop waits; when it returns True the flow raises
:class:`RunCancelled`, and Prefect's task runner cancels the tasks not yet started. Finished
stores stay (they are written atomically); the task already running ends first.

Calling :func:`run_flow` runs against Prefect's ephemeral local API (no server to start by
hand); set ``PREFECT_API_URL`` to use a running server instead.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Cancelled

from flows.cluster import make_task_runner
from flows.outdir import check_out, out_lock
from flows.tasks import (
    allow_tasks,
    assemble_task,
    denoise_task,
    fit_task,
    ingest_task,
    segment_task,
    stop_tasks,
    summarize_task,
)
from pipeline import __version__
from pipeline.config import Settings
from pipeline.io import discover_tiffs
from pipeline.io.atomic import atomic_write_text, clean_partials
from pipeline.process import WORK_DIR, code_version, result_path

__all__ = ["RunCancelled", "environment", "run", "run_flow"]

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
Cancel = Callable[[], bool]


class RunCancelled(RuntimeError):
    """The ``cancel`` hook asked the run to stop; no new image was started after it."""


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded in ``run.json``."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("numpy", "scipy", "torch", "dask", "distributed", "zarr", "ome-zarr",
                 "scikit-image", "pandas", "prefect", "prefect-dask", "tifffile"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "packages": pkgs}


def _reason(state: Any) -> str:
    exc = state.result(raise_on_failure=False)
    return str(exc) if isinstance(exc, BaseException) else str(state.message)


def _tell(progress: Progress | None, event: dict[str, Any]) -> None:
    """Send ``event`` to the progress hook; a broken display never fails the run."""
    if progress is not None:
        try:
            progress(event)
        except Exception:
            log.debug("progress hook failed", exc_info=True)


def _wait(fut: Any, cancel: Cancel | None, out: str) -> None:
    """Wait for a task future; with ``cancel``, poll it meanwhile and raise RunCancelled.

    On cancel, the run's tasks still running in this process stop at their next progress
    point (:func:`flows.tasks.stop_tasks`), so a long fit does not run on unseen (the task
    runner waits for running tasks before the flow returns).
    """
    if cancel is None:
        fut.wait()
        return
    wrapped = getattr(fut, "wrapped_future", None)  # a concurrent or dask future: has done()
    while not cancel():
        fut.wait(timeout=0.2)
        if wrapped.done() if wrapped is not None else fut.state.is_final():
            fut.wait()  # at once now; keeps the final state on the future
            return
    stop_tasks(out)
    raise RunCancelled("cancelled by the user")


def _one_image_per_store(images: list[Path], out_dir: Path
                         ) -> tuple[list[Path], list[dict[str, str]]]:
    """Inputs that would write the same ``OUT/<stem>.ome.zarr`` (``a.tif`` and ``a.tiff``, or
    ``a.tif`` in two subfolders with ``--recursive``): the first keeps it, the others fail
    with a reason, so that no two images ever mix in one store."""
    owner: dict[Path, Path] = {}
    keep, failed = [], []
    for p in images:
        store = result_path(p, out_dir)
        if store in owner:
            failed.append({"image": str(p), "reason": (
                f"{p}: {owner[store]} also writes {store.name}; rename one of them (this one "
                "was not processed)")})
            continue
        owner[store] = p
        keep.append(p)
    return keep, failed


def _image_record(store: str, skipped: bool) -> dict[str, Any]:
    import zarr

    attrs = dict(zarr.open_group(store, mode="r").attrs["chromarate"])
    return {"image": attrs["source"], "store": store, "skipped": skipped, "key": attrs["key"],
            "timings_s": attrs.get("timings_s", {}), "denoise": attrs.get("denoise"),
            "planes": attrs["planes"]}


@flow(name="chromarate-run", validate_parameters=False, log_prints=False)
def run_flow(input: str, out: str, settings: Settings, progress: Progress | None = None,
             cancel: Cancel | None = None) -> dict[str, Any]:
    """Process every TIFF under ``input`` into ``out``; returns the ``run.json`` record.

    ``progress`` gets ``{"event": "start", "total", "images"}``, then per image
    ``{"event": "done" | "skipped", "image", "store"}`` or ``{"event": "failed", "image",
    "reason"}``. ``cancel`` returning True ends the run with :class:`RunCancelled`.
    """
    try:
        return _run(input, out, settings, progress, cancel)
    except RunCancelled as exc:  # a Cancelled flow run, not a Failed one; the caller gets exc
        return Cancelled(message=str(exc), data=exc)


def _run(input: str, out: str, settings: Settings, progress: Progress | None,
         cancel: Cancel | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    allow_tasks(out)  # a cancelled earlier run's stop request is not this run's
    clean_partials(out_dir)
    src = Path(input)
    images = [src] if src.is_file() else discover_tiffs(src, recursive=settings.recursive)
    _tell(progress, {"event": "start", "total": len(images), "images": [str(p) for p in images]})
    images, failed = _one_image_per_store(images, out_dir)
    for item in failed:
        _tell(progress, {"event": "failed", **item})
    manifests = {str(p): ingest_task.submit(str(p), out, settings) for p in images}
    chains = {}
    for path, fut in manifests.items():
        _wait(fut, cancel, out)
        if not fut.state.is_completed():
            failed.append({"image": path, "reason": _reason(fut.state)})
            _tell(progress, {"event": "failed", **failed[-1]})
            continue
        m = fut.result()
        if m["done"]:
            chains[path] = (m, None)
            _tell(progress, {"event": "skipped", "image": path, "store": m["store"]})
            continue
        den = denoise_task.submit(m, settings)
        fit = fit_task.submit(m, settings, den)
        seg = segment_task.submit(m, settings, fit)
        chains[path] = (m, [den, fit, seg, assemble_task.submit(m, settings, den, fit, seg)])
    stores, records = [], []
    for path, (m, futs) in chains.items():
        if futs is None:
            stores.append(m["store"])
            records.append(_image_record(m["store"], True))
            continue
        for f in futs:
            _wait(f, cancel, out)
        bad = next((f.state for f in futs if f.state.is_failed() or f.state.is_crashed()),
                   None)
        if bad is not None or not futs[-1].state.is_completed():
            failed.append({"image": path, "reason": _reason(bad or futs[-1].state)})
            _tell(progress, {"event": "failed", **failed[-1]})
            continue
        stores.append(futs[-1].result())
        records.append(_image_record(stores[-1], False))
        _tell(progress, {"event": "done", "image": path, "store": stores[-1]})
    summaries = summarize_task(stores, out) if stores else {}
    record = {
        "version": __version__, "code_version": code_version(),
        "settings": settings.model_dump(mode="json"), "seed": settings.seed,
        "input": str(src.resolve()), "out": str(out_dir.resolve()),
        "images": records, "failed": failed, "summaries": summaries,
        "seconds": time.perf_counter() - t0, "environment": environment(),
    }
    atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2, default=str))
    return record


def run(input: str | Path, out: str | Path, settings: Settings, *,
        progress: Progress | None = None, cancel: Cancel | None = None) -> dict[str, Any]:
    """Run the flow with the task runner that ``settings.run`` asks for (hooks: see
    :func:`run_flow`; without them the flow behaves exactly as ``chromarate run``)."""
    out = Path(out)
    check_out(out)
    with out_lock(out):  # a second run into ``out`` is refused while this one writes
        runner = make_task_runner(settings.run)
        (out / WORK_DIR).mkdir(parents=True, exist_ok=True)
        hooks = {k: v for k, v in (("progress", progress), ("cancel", cancel)) if v is not None}
        return run_flow.with_options(task_runner=runner)(str(input), str(out), settings, **hooks)
