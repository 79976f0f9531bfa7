"""Clusters nobody else can use (issue 16): every dask scheduler chromarate starts or joins
speaks TLS with client certificates, and the Prefect API listens on loopback only.

Real schedulers on 127.0.0.1 (no mocks); SLURM is built and its job script read, never
submitted.
"""

from __future__ import annotations

import gc
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from distributed import LocalCluster
from distributed.security import Security

from flows.cli import EXIT_OK, EXIT_USAGE, main
from flows.cluster import build_slurm_cluster, make_task_runner
from pipeline.config import RunSettings
from pipeline.simulate import simulate_folder

FAST = ["--method", "closed-form", "--denoise", "none", "--delta", "0.1", "--window", "0.1"]


def _cert_files(folder: Path) -> dict[str, Path]:
    """A CA and one certificate signed by it, as PEM files readable by the user only."""
    sec = Security.temporary()
    folder.mkdir(mode=0o700)
    files = {"ca": sec.tls_ca_file, "cert": sec.tls_client_cert, "key": sec.tls_client_key}
    paths = {}
    for name, pem in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_text(pem)
        paths[name].chmod(0o600)
    return paths


_PROBE = """
import sys
from distributed import Client
from distributed.security import Security
kw = eval(sys.argv[2])
sec = None if kw is None else (Security.temporary() if kw == "temporary" else Security(**kw))
try:
    with Client(sys.argv[1], security=sec, timeout="3s"):
        sys.exit(0)
except (OSError, TimeoutError, ValueError, TypeError):
    sys.exit(3)
"""


def _refused(address: str, security: Security | dict | str | None) -> bool:
    """Whether a client with ``security`` (a Security, its keyword arguments, "temporary" for
    a certificate from another CA, or None) is refused. Each probe runs in its own process:
    a failed connection can leave distributed's shared event-loop runner in a state where
    the next client in the same process fails for that reason instead."""
    if isinstance(security, Security):
        security = {"tls_ca_file": security.tls_ca_file,
                    "tls_client_cert": security.tls_client_cert,
                    "tls_client_key": security.tls_client_key, "require_encryption": True}
    proc = subprocess.run([sys.executable, "-c", _PROBE, address, repr(security)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, 3):
        raise AssertionError(f"probe crashed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode == 3


@pytest.fixture()
def tls_scheduler(tmp_path):
    """A TLS scheduler and one in-process worker on 127.0.0.1, with certificates on disk."""
    certs = _cert_files(tmp_path / "certs")
    c, k = str(certs["cert"]), str(certs["key"])
    sec = Security(tls_ca_file=str(certs["ca"]), tls_scheduler_cert=c, tls_scheduler_key=k,
                   tls_worker_cert=c, tls_worker_key=k, tls_client_cert=c, tls_client_key=k,
                   require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tls://", security=sec, dashboard_address=None) as cluster:
        yield cluster, certs


def test_address_mode_runs_with_the_right_certificates(prefect_api, tls_scheduler, tmp_path):
    cluster, certs = tls_scheduler
    addr = cluster.scheduler_address
    assert addr.startswith("tls://127.0.0.1:")
    simulate_folder(tmp_path / "images", truth_dir=tmp_path / "truth", shape=(48, 48),
                    cases=[("smooth", 1)], seed=4)
    config = tmp_path / "cluster.toml"
    config.write_text(f'[run]\ncluster = "address"\nscheduler_address = "{addr}"\n'
                      f'tls_ca_file = "{certs["ca"]}"\ntls_cert_file = "{certs["cert"]}"\n'
                      f'tls_key_file = "{certs["key"]}"\n')
    rc = main(["run", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--config",
               str(config), *FAST])
    assert rc == EXIT_OK
    assert (tmp_path / "out" / "smooth_1ch_s4.ome.zarr").is_dir()
    ran = set(cluster.scheduler.task_prefixes)  # the stages ran on this scheduler's worker
    assert {"denoise_task", "fit_task", "segment_task", "assemble_task"} <= ran, ran


def test_clients_without_the_certificates_are_refused(tls_scheduler):
    cluster, certs = tls_scheduler
    addr = cluster.scheduler_address
    ok = {"tls_ca_file": str(certs["ca"]), "tls_client_cert": str(certs["cert"]),
          "tls_client_key": str(certs["key"]), "require_encryption": True}
    assert not _refused(addr, ok)  # the control: the right credentials connect
    assert _refused(addr.replace("tls://", "tcp://"), None)  # plain TCP
    # TLS that trusts the scheduler but has no client certificate
    assert _refused(addr, {"tls_ca_file": str(certs["ca"]), "require_encryption": True})
    assert _refused(addr, "temporary")  # a certificate from another CA


def test_a_tls_address_without_certificates_is_a_usage_error(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[run]\ncluster = "address"\nscheduler_address = "tls://10.0.0.5:8786"\n')
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--config",
                 str(config)]) == EXIT_USAGE
    assert "uses TLS: give tls_ca_file" in capsys.readouterr().err


def test_local_cluster_is_tls_on_loopback():
    runner = make_task_runner(RunSettings(workers=2))
    kwargs = {**runner.cluster_kwargs, "n_workers": 0}  # the scheduler alone: quick
    assert kwargs["security"].require_encryption
    with LocalCluster(**kwargs) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tls://127.0.0.1:")
        assert not _refused(addr, kwargs["security"])
        assert _refused(addr.replace("tls://", "tcp://"), None)
        assert _refused(addr, "temporary")
    # two runs never share certificates
    assert make_task_runner(RunSettings(workers=2)).cluster_kwargs["security"].tls_ca_file \
        != kwargs["security"].tls_ca_file


def test_slurm_job_script_uses_tls_with_private_certificate_files(tmp_path):
    pytest.importorskip("dask_jobqueue")
    run = RunSettings(cluster="slurm", tls_shared_dir=str(tmp_path / "tls"))
    cluster = build_slurm_cluster(run, scheduler_options={"host": "127.0.0.1"})
    try:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        script = cluster.job_script()
        assert cluster.scheduler_address in script
        for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
            assert flag in script, script
        files = [Path(w) for w in script.split() if w.startswith(str(tmp_path / "tls"))]
        assert len(files) == 3
        folder = files[0].parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
            assert f.read_text().startswith("-----BEGIN")
        assert not _refused(cluster.scheduler_address, cluster.security)
        assert _refused(cluster.scheduler_address.replace("tls://", "tcp://"), None)
    finally:
        cluster.close()
    del cluster
    gc.collect()
    assert not folder.exists()  # the certificates go with the cluster


def test_prefect_api_listens_on_loopback_only(prefect_api):
    import psutil
    from prefect.server.api.server import SubprocessASGIServer

    url = urlparse(prefect_api)
    assert url.hostname == "127.0.0.1"
    listening = [c.laddr for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == url.port]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    # the ephemeral server of `chromarate run` (no PREFECT_API_URL) is the same class
    assert urlparse(SubprocessASGIServer(port=url.port).address).hostname == "127.0.0.1"
