"""The ``chromarate`` Prefect flow: a folder of TIFFs to rate maps and tables.

:func:`run` first checks the results folder (:mod:`flows.outdir`) and inspects every image in
process (:func:`plan_run`: layout, pixel size, channels, and whether its store is already up
to date), all before Prefect starts: a refused file is reported at once, and a re-run with
everything up to date ends without starting Prefect at all. Only when images remain to
compute does the flow start; per image: denoise → fit → segment → assemble (see
:mod:`flows.tasks`), all images submitted at once to the task runner chosen by
:mod:`flows.cluster`. A failing image is recorded and never stops the others, and the run
ends with the CSV summaries and ``OUT/run.json``.

Optional hooks, for a caller that shows progress or lets the user stop (the napari run
widget): ``progress`` receives an event per image (in the caller's thread), and ``cancel``
is polled while the run waits; when it returns True the run raises :class:`RunCancelled`,
and Prefect's task runner cancels the tasks not yet started. Finished stores stay (they are
written atomically); the task already running ends first.

The flow runs against Prefect's ephemeral local API (no server to start by hand; it listens
on 127.0.0.1 only); set ``PREFECT_API_URL`` to use a running server instead
(docs/when-things-go-wrong.md). Importing this module does not import Prefect.
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

from flows.outdir import check_not_inside, check_out, check_settings, out_lock
from pipeline import __version__, process
from pipeline.config import Settings
from pipeline.io import InputError, discover_tiffs
from pipeline.io.atomic import atomic_write_text, clean_partials
from pipeline.process import WORK_DIR, code_version, result_path

__all__ = ["RunCancelled", "environment", "plan_run", "run", "run_flow"]  # noqa: F822 (lazy)

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
    from flows.tasks import stop_tasks

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


def _images(src: Path, settings: Settings) -> list[Path]:
    """The input TIFFs (an :class:`~pipeline.io.InputError` if ``src`` holds none)."""
    return [src] if src.is_file() else discover_tiffs(src, recursive=settings.recursive)


def plan_run(input: str | Path, out: str | Path, settings: Settings, *,
             progress: Progress | None = None, cancel: Cancel | None = None,
             images: list[Path] | None = None) -> dict[str, Any]:
    """Inspect every image in process, without Prefect and without reading pixels.

    Returns ``{"images": [path, ...], "manifests": [(path, manifest), ...], "failed": [...]}``
    where each manifest (a :class:`~pipeline.manifest.ImageManifest`) says whether its store
    is up to date (``done``). Sends the
    ``start`` event, then ``failed`` for each refused file and ``skipped`` for each image
    already up to date. Call it with the output folder's lock held: it removes the work
    folders of earlier runs with other settings (:func:`pipeline.process.ingest`).
    """
    out_dir = Path(out)
    images = _images(Path(input), settings) if images is None else images
    _tell(progress, {"event": "start", "total": len(images), "images": [str(p) for p in images]})
    keep, failed = _one_image_per_store(images, out_dir)
    for item in failed:
        _tell(progress, {"event": "failed", **item})
    manifests = []
    for p in keep:
        if cancel is not None and cancel():
            raise RunCancelled("cancelled by the user")
        try:
            m = process.ingest(p, out_dir, settings)
        except (InputError, process.ImageError) as exc:
            failed.append({"image": str(p), "reason": str(exc)})
            _tell(progress, {"event": "failed", **failed[-1]})
            continue
        manifests.append((str(p), m))
        if m.done:
            _tell(progress, {"event": "skipped", "image": str(p), "store": m.store})
    return {"images": [str(p) for p in images], "manifests": manifests, "failed": failed}


def _image_record(store: str, skipped: bool, assemble_s: float | None = None
                  ) -> dict[str, Any]:
    import zarr

    attrs = dict(zarr.open_group(store, mode="r").attrs["chromarate"])
    timings = dict(attrs.get("timings_s", {}))  # the stages before the store was written
    if assemble_s is not None:
        timings["assemble"] = assemble_s
    record = {"image": attrs["source"], "store": store, "skipped": skipped,
              "key": attrs["key"], "timings_s": timings, "denoise": attrs.get("denoise"),
              "planes": attrs["planes"]}
    # how the file was read, where the user should know: axes assumed, series not read,
    # channel roles taken from the names in the file
    return record | {k: attrs[k] for k in ("axes_note", "series_note", "channels_note")
                     if attrs.get(k)}


def _summaries(out_dir: Path, settings: Settings, records: list[dict[str, Any]],
               failed: list[dict[str, str]]) -> dict[str, str]:
    """Write the CSV summaries over ``records``, unless the last run's record shows the same
    settings, stores and keys, no failure either time, and its tables are still there (an
    up-to-date re-run then rewrites nothing)."""
    if not records:
        return {}
    try:
        last = json.loads((out_dir / "run.json").read_text())
        same = (not failed and not last["failed"]
                and last["settings"] == settings.model_dump(mode="json")
                and [(i["store"], i["key"]) for i in last["images"]]
                == [(i["store"], i["key"]) for i in records]
                and all(Path(p).is_file() for p in last["summaries"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        same = False
    if same:
        return dict(last["summaries"])
    from pipeline.summary import summarize_store, write_summaries  # pandas: only when needed

    return write_summaries((summarize_store(i["store"]) for i in records), out_dir)


def _finish(input: str | Path, out_dir: Path, settings: Settings, records: list[dict[str, Any]],
            failed: list[dict[str, str]], t0: float) -> dict[str, Any]:
    """The end of every run: the CSV summaries and ``OUT/run.json``."""
    record = {
        "version": __version__, "code_version": code_version(),
        "settings": settings.model_dump(mode="json"), "seed": settings.seed,
        "input": str(Path(input).resolve()), "out": str(out_dir.resolve()),
        "images": records, "failed": failed,
        "summaries": _summaries(out_dir, settings, records, failed),
        "seconds": time.perf_counter() - t0, "environment": environment(),
    }
    atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2, default=str))
    if records:
        from pipeline.report import try_write_report

        try_write_report(out_dir)  # OUT/report.html; never fails the run
    return record


def _run_flow(input: str, out: str, settings: Settings, progress: Progress | None = None,
              cancel: Cancel | None = None, plan: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """Process every TIFF under ``input`` into ``out``; returns the ``run.json`` record.

    ``progress`` gets ``{"event": "start", "total", "images"}``, then per image
    ``{"event": "done" | "skipped", "image", "store"}`` or ``{"event": "failed", "image",
    "reason"}``. ``cancel`` returning True ends the run with :class:`RunCancelled`. ``plan``
    is :func:`plan_run`'s result when the caller has made it (otherwise it is made here).
    """
    from prefect.states import Cancelled

    given = _GIVEN.pop(str(Path(out).resolve()), {})  # from run(): not flow parameters
    progress, cancel = progress or given.get("progress"), cancel or given.get("cancel")
    plan = plan or given.get("plan")
    try:
        return _run(input, out, settings, progress, cancel, plan)
    except RunCancelled as exc:  # a Cancelled flow run, not a Failed one; the caller gets exc
        return Cancelled(message=str(exc), data=exc)


def _run(input: str, out: str, settings: Settings, progress: Progress | None,
         cancel: Cancel | None, plan: dict[str, Any] | None) -> dict[str, Any]:
    from flows.tasks import allow_tasks, assemble_task, denoise_task, fit_task, segment_task

    t0 = time.perf_counter()
    out_dir = Path(out)
    (out_dir / WORK_DIR).mkdir(parents=True, exist_ok=True)
    allow_tasks(out)  # a cancelled earlier run's stop request is not this run's
    if plan is None:
        clean_partials(out_dir)
        plan = plan_run(input, out, settings, progress=progress, cancel=cancel)
    failed = list(plan["failed"])
    chains = {}
    for path, m in plan["manifests"]:
        if m.done:
            chains[path] = (m, None)
            continue
        den = denoise_task.submit(m, settings)
        fit = fit_task.submit(m, settings, den)
        seg = segment_task.submit(m, settings, fit)
        chains[path] = (m, [den, fit, seg, assemble_task.submit(m, settings, den, fit, seg)])
    records = []
    for path, (m, futs) in chains.items():
        if futs is None:
            records.append(_image_record(m.store, True))
            continue
        for f in futs:
            _wait(f, cancel, out)
        bad = next((f.state for f in futs if f.state.is_failed() or f.state.is_crashed()),
                   None)
        if bad is not None or not futs[-1].state.is_completed():
            failed.append({"image": path, "reason": _reason(bad or futs[-1].state)})
            _tell(progress, {"event": "failed", **failed[-1]})
            continue
        done = futs[-1].result()
        records.append(_image_record(done["path"], False, assemble_s=done["seconds"]))
        _tell(progress, {"event": "done", "image": path, "store": records[-1]["store"]})
    return _finish(input, out_dir, settings, records, failed, t0)


_FLOW: Any = None
# run() hands its hooks and plan to the flow here, keyed by output folder (one run per folder
# at a time: flows.outdir.out_lock), not as flow parameters: Prefect records parameters and
# ships them with the run's context to dask workers, and a hook may hold a lock or a window
_GIVEN: dict[str, dict[str, Any]] = {}


def _flow() -> Any:
    """The Prefect flow object (Prefect is imported on first use only)."""
    global _FLOW
    if _FLOW is None:
        from prefect import flow

        _FLOW = flow(name="chromarate-run", validate_parameters=False,
                     log_prints=False)(_run_flow)
    return _FLOW


def __getattr__(name: str) -> Any:
    if name == "run_flow":  # the flow object, built when first asked for
        return _flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(input: str | Path, out: str | Path, settings: Settings, *,
        progress: Progress | None = None, cancel: Cancel | None = None,
        stages: Progress | None = None, overwrite: bool = False,
        samples: Any = None) -> dict[str, Any]:
    """Run with the task runner that ``settings.run`` asks for; returns the ``run.json`` record.

    Before anything is written: the output folder is refused (an
    :class:`~pipeline.io.InputError`) when it lies inside the input folder, holds results made
    with other settings (unless ``overwrite``), cannot be written, or another run is writing
    to it. Then every image is inspected in process (:func:`plan_run`); when none is left to
    compute, the run ends there without starting Prefect. ``progress`` and ``cancel``: see
    :func:`run_flow`; ``stages`` receives the tasks' stage and tile events while the flow runs
    (:func:`flows.tasks.set_progress_sink`). ``samples``: a sample sheet checked by the caller
    (:func:`pipeline.compare.read_sample_sheet`), kept as ``OUT/samples.csv`` and joined
    into the tables and the report.
    """
    t0 = time.perf_counter()
    input, out = Path(input), Path(out)
    if not input.exists():
        raise InputError(input, "no such file or folder", "Check the path given as input")
    images = _images(input, settings)
    check_not_inside(input, out)
    check_settings(out, settings, overwrite=overwrite)
    check_out(out)
    with out_lock(out):  # a second run into ``out`` is refused while this one writes
        clean_partials(out)
        if samples is not None:
            from pipeline.compare import write_sample_sheet

            write_sample_sheet(samples, out)
        plan = plan_run(input, out, settings, progress=progress, cancel=cancel, images=images)
        if all(m.done for _, m in plan["manifests"]):  # nothing to compute: no Prefect
            records = [_image_record(m.store, True) for _, m in plan["manifests"]]
            return _finish(input, out, settings, records, plan["failed"], t0)
        from flows.cluster import make_task_runner
        from flows.tasks import set_progress_sink

        runner = make_task_runner(settings.run)
        key = str(out.resolve())
        _GIVEN[key] = {"progress": progress, "cancel": cancel, "plan": plan}
        if stages is not None:
            set_progress_sink(stages)
        try:
            return _flow().with_options(task_runner=runner)(str(input), str(out), settings)
        finally:
            _GIVEN.pop(key, None)
            if stages is not None:
                set_progress_sink(None)
