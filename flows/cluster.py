"""Where tasks run: in process, a dask ``LocalCluster``, SLURM, or an existing scheduler.

``settings.run.cluster`` selects the backend; ``workers`` sizes a local cluster. SLURM goes
through ``dask_jobqueue.SLURMCluster`` (install the ``slurm`` extra); its job script can be
inspected without submitting anything (:func:`slurm_job_script`).

Examples
--------
>>> from pipeline.config import RunSettings
>>> type(make_task_runner(RunSettings())).__name__
'ThreadPoolTaskRunner'
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import RunSettings

__all__ = ["build_slurm_cluster", "make_task_runner", "slurm_job_script", "slurm_kwargs"]

log = logging.getLogger(__name__)


def slurm_kwargs(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` from the run settings.

    Each SLURM job runs ``slurm_cores`` single-threaded worker processes, so that torch and
    numpy inside a task do not oversubscribe the job's cores.
    """
    kwargs: dict[str, Any] = {
        "cores": run.slurm_cores, "processes": run.slurm_cores, "memory": run.slurm_memory,
        "walltime": run.slurm_walltime, "job_extra_directives": list(run.slurm_job_extra),
        "job_script_prologue": ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"],
    }
    if run.slurm_queue:
        kwargs["queue"] = run.slurm_queue
    if run.slurm_account:
        kwargs["account"] = run.slurm_account
    if scheduler_options:
        kwargs["scheduler_options"] = scheduler_options
    return kwargs


def build_slurm_cluster(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None):
    """A ``SLURMCluster`` object (no job is submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("cluster 'slurm' needs dask-jobqueue: pip install "
                           "'chromarate[slurm]'") from exc
    return SLURMCluster(**slurm_kwargs(run, scheduler_options=scheduler_options))


def slurm_job_script(run: RunSettings, *, scheduler_options: dict[str, Any] | None = None
                     ) -> str:
    """The sbatch script one worker job would run (the cluster is closed afterwards)."""
    cluster = build_slurm_cluster(run, scheduler_options=scheduler_options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def make_task_runner(run: RunSettings):
    """The Prefect task runner for ``run``: threads in process, or a prefect-dask runner."""
    if run.cluster == "local" and run.workers <= 1:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if run.cluster == "address":
        return DaskTaskRunner(address=run.scheduler_address)
    if run.cluster == "slurm":
        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster",
                              cluster_kwargs=slurm_kwargs(run),
                              adapt_kwargs={"minimum": 1, "maximum": run.slurm_jobs})
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": run.workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None, "host": "127.0.0.1"},
    )
