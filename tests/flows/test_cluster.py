"""Cluster switches: SLURM is built and its job script read, never submitted."""

import pytest

from flows.cluster import make_task_runner, slurm_job_script
from pipeline.config import RunSettings


def test_slurm_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    run = RunSettings(cluster="slurm", slurm_queue="gpu", slurm_account="lab42",
                      slurm_cores=8, slurm_memory="32GB", slurm_walltime="04:00:00",
                      slurm_job_extra=("--gres=gpu:1",), tls_shared_dir=str(tmp_path))
    script = slurm_job_script(run, scheduler_options={"host": "127.0.0.1"})
    for needle in ("#SBATCH -p gpu", "#SBATCH -A lab42", "#SBATCH -t 04:00:00",
                   "#SBATCH --gres=gpu:1", "--nworkers 8", "127.0.0.1", "OMP_NUM_THREADS=1"):
        assert needle in script, needle


def test_runner_choice():
    from prefect_dask import DaskTaskRunner

    assert type(make_task_runner(RunSettings())).__name__ == "ThreadPoolTaskRunner"
    assert isinstance(make_task_runner(RunSettings(workers=3)), DaskTaskRunner)
    addr = make_task_runner(RunSettings(cluster="address", scheduler_address="tcp://127.0.0.1:8786"))
    assert isinstance(addr, DaskTaskRunner) and addr.address == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="scheduler_address"):
        RunSettings(cluster="address")
