"""Where tasks run: in process, a dask ``LocalCluster``, SLURM, or an existing scheduler.

``settings.run.cluster`` selects the backend; ``workers`` sizes a local cluster. SLURM goes
through ``dask_jobqueue.SLURMCluster`` (install the ``slurm`` extra); its job script can be
inspected without submitting anything (:func:`slurm_job_script`).

Every dask cluster chromarate starts speaks TLS with mutual authentication (docs/clusters.md):
a dask scheduler runs whatever code a connected client sends, so an open one lets anyone who
can reach its port run code as the user. A local cluster gets a fresh certificate authority
per run, held in memory (``Security.temporary()``) and listens on 127.0.0.1 only. SLURM jobs
get the same kind of per-run certificates as files in a fresh folder under
``tls_shared_dir`` (mode 0700, files 0600), which the job script names; the files go when
the run ends. In ``address`` mode the user's own certificates are used
(:func:`address_security`).

Examples
--------
>>> from pipeline.config import RunSettings
>>> type(make_task_runner(RunSettings())).__name__
'ThreadPoolTaskRunner'
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from pipeline.config import RunSettings

__all__ = ["address_security", "build_slurm_cluster", "make_task_runner", "slurm_job_script",
           "slurm_kwargs", "tls_slurm_cluster"]

log = logging.getLogger(__name__)


def slurm_kwargs(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` from the run settings.

    Each SLURM job runs ``slurm_cores`` single-threaded worker processes, so that torch and
    numpy inside a task do not oversubscribe the job's cores. The scheduler's dashboard
    listens on 127.0.0.1 only (it shows file names and task details).
    """
    kwargs: dict[str, Any] = {
        "cores": run.slurm_cores, "processes": run.slurm_cores, "memory": run.slurm_memory,
        "walltime": run.slurm_walltime, "job_extra_directives": list(run.slurm_job_extra),
        "job_script_prologue": ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"],
        "scheduler_options": {"dashboard_address": "127.0.0.1:0", **(scheduler_options or {})},
    }
    if run.slurm_queue:
        kwargs["queue"] = run.slurm_queue
    if run.slurm_account:
        kwargs["account"] = run.slurm_account
    return kwargs


def tls_slurm_cluster(*, tls_shared_dir: str = "~/.chromarate/tls", **kwargs: Any):
    """A ``SLURMCluster`` whose scheduler and workers authenticate each other with TLS.

    A fresh certificate authority is made for this cluster (``Security.temporary()``); the
    worker's certificate, key and the CA are written to a new folder under
    ``tls_shared_dir`` (which the compute nodes must see: a home or project folder), readable
    by the user only, and removed with the cluster object. No job is submitted until the
    cluster is scaled.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("cluster 'slurm' needs dask-jobqueue: pip install "
                           "'chromarate[slurm]'") from exc
    from distributed.security import Security

    base = Path(os.path.expandvars(tls_shared_dir)).expanduser()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = tempfile.mkdtemp(prefix="run-", dir=base)  # mode 0700; files in it are 0600
    try:
        cluster = SLURMCluster(security=Security.temporary(), protocol="tls://",
                               shared_temp_directory=folder, **kwargs)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # the certificate files are temporary files the cluster holds; close (delete) them, then
    # the folder, when the cluster object goes
    files = [v for k, v in vars(cluster).items() if k.startswith("_job_") and hasattr(v, "close")]
    weakref.finalize(cluster, _remove, files, folder)
    return cluster


def _remove(files: list[Any], folder: str) -> None:
    for f in files:
        try:
            f.close()
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def build_slurm_cluster(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None):
    """The TLS ``SLURMCluster`` of ``run`` (no job is submitted until it is scaled)."""
    return tls_slurm_cluster(tls_shared_dir=run.tls_shared_dir,
                             **slurm_kwargs(run, scheduler_options=scheduler_options))


def slurm_job_script(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None
                     ) -> str:
    """The sbatch script one worker job would run (the cluster is closed afterwards)."""
    cluster = build_slurm_cluster(run, scheduler_options=scheduler_options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def address_security(run: RunSettings):
    """The ``distributed.security.Security`` for ``address`` mode, or None without
    certificates (a ``tcp://`` scheduler; docs/clusters.md says why that is unsafe)."""
    if not run.tls_ca_file:
        return None
    from distributed.security import Security

    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(run, name)
        if path and not Path(path).expanduser().is_file():
            raise ValueError(f"{name} {path}: no such file (run.{name} in the config file)")
    def ex(path: str | None) -> str | None:
        return str(Path(path).expanduser()) if path else None

    return Security(tls_ca_file=ex(run.tls_ca_file), tls_client_cert=ex(run.tls_cert_file),
                    tls_client_key=ex(run.tls_key_file), require_encryption=True)


def make_task_runner(run: RunSettings):
    """The Prefect task runner for ``run``: threads in process, or a prefect-dask runner."""
    if run.cluster == "local" and run.workers <= 1:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if run.cluster == "address":
        security = address_security(run)
        if security is None:
            log.warning("the dask scheduler at %s is used without TLS: anyone who can reach "
                        "it can run code as its user (docs/clusters.md)", run.scheduler_address)
        return DaskTaskRunner(address=run.scheduler_address,
                              client_kwargs={"security": security} if security else None)
    if run.cluster == "slurm":
        return DaskTaskRunner(cluster_class=tls_slurm_cluster,
                              cluster_kwargs={"tls_shared_dir": run.tls_shared_dir,
                                              **slurm_kwargs(run)},
                              adapt_kwargs={"minimum": 1, "maximum": run.slurm_jobs})
    from distributed.security import Security

    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": run.workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None, "host": "127.0.0.1",
                        "protocol": "tls://", "security": Security.temporary()},
    )
