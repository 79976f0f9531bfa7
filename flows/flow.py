"""The ``chromarate`` Prefect flow: a folder of TIFFs to rate maps and tables.

Per image: ingest → denoise → fit → segment → assemble (see :mod:`flows.tasks`), all images
submitted at once to the task runner chosen by :mod:`flows.cluster`. Finished images are
skipped, a failing image is recorded and never stops the others, and the run ends with the
CSV summaries and ``OUT/run.json``.

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
from pathlib import Path
from typing import Any

from prefect import flow

from flows.cluster import make_task_runner
from flows.tasks import (
    assemble_task,
    denoise_task,
    fit_task,
    ingest_task,
    segment_task,
    summarize_task,
)
from pipeline import __version__
from pipeline.config import Settings
from pipeline.io import discover_tiffs
from pipeline.io.atomic import atomic_write_text, clean_partials
from pipeline.process import WORK_DIR, code_version

__all__ = ["environment", "run", "run_flow"]

log = logging.getLogger(__name__)


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


def _image_record(store: str, skipped: bool) -> dict[str, Any]:
    import zarr

    attrs = dict(zarr.open_group(store, mode="r").attrs["chromarate"])
    return {"image": attrs["source"], "store": store, "skipped": skipped, "key": attrs["key"],
            "timings_s": attrs.get("timings_s", {}), "denoise": attrs.get("denoise"),
            "planes": attrs["planes"]}


@flow(name="chromarate-run", validate_parameters=False, log_prints=False)
def run_flow(input: str, out: str, settings: Settings) -> dict[str, Any]:
    """Process every TIFF under ``input`` into ``out``; returns the ``run.json`` record."""
    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_partials(out_dir)
    src = Path(input)
    images = [src] if src.is_file() else discover_tiffs(src, recursive=settings.recursive)
    manifests = {str(p): ingest_task.submit(str(p), out, settings) for p in images}
    failed, chains = [], {}
    for path, fut in manifests.items():
        fut.wait()
        if not fut.state.is_completed():
            failed.append({"image": path, "reason": _reason(fut.state)})
            continue
        m = fut.result()
        if m["done"]:
            chains[path] = (m, None)
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
            f.wait()
        bad = next((f.state for f in futs if f.state.is_failed() or f.state.is_crashed()),
                   None)
        if bad is not None or not futs[-1].state.is_completed():
            failed.append({"image": path, "reason": _reason(bad or futs[-1].state)})
            continue
        stores.append(futs[-1].result())
        records.append(_image_record(stores[-1], False))
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


def run(input: str | Path, out: str | Path, settings: Settings) -> dict[str, Any]:
    """Run the flow with the task runner that ``settings.run`` asks for."""
    runner = make_task_runner(settings.run)
    (Path(out) / WORK_DIR).mkdir(parents=True, exist_ok=True)
    return run_flow.with_options(task_runner=runner)(str(input), str(out), settings)
