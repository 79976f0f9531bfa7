"""How long ``chromarate run`` takes to answer, and how much of it is Prefect -> docs/startup.json.

Side by side, in one run, every measurement a fresh process (wall time of the whole command,
as a user sees it), on a folder of two small simulated images (closed-form, no denoising,
fixed bandwidths, so that the work itself is small):

- ``empty flow, ephemeral``: a Prefect flow that does nothing, with Prefect's ephemeral
  server (what ``chromarate run`` uses without ``PREFECT_API_URL``): Prefect's start-up cost.
- ``empty flow, server``: the same against a running ``prefect server start``.
- ``first run, ephemeral`` / ``first run, server``: ``chromarate run`` computing both images.
- ``up-to-date re-run``: ``chromarate run`` again, nothing to compute (Prefect not started).
- ``refused files only``: a folder of two unreadable TIFFs (answered before Prefect too).

    python benchmarks/startup.py              # a few minutes on 2 shared cores
    python benchmarks/startup.py --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--method", "closed-form", "--denoise", "none", "--delta", "0.1", "--window", "0.1"]
EMPTY_FLOW = ("from prefect import flow\n@flow\ndef nothing():\n    return 1\nnothing()\n")


CODE: Path = ROOT  # a frozen copy of the code, set in main()


def _env(home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PYTHONPATH": str(CODE),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _timed(args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
           ) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the command and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in ok:
        raise RuntimeError(f"{args[:4]} exited {res.returncode}: {res.stderr[-2000:]}")
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=_env(home, None),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError("prefect server did not start in 300 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "startup.json")
    args = ap.parse_args()
    from pipeline.simulate import simulate_folder

    global CODE
    tmp = Path(tempfile.mkdtemp(prefix="chromarate-startup-"))
    # the commands run a frozen copy of the code: an edit to pipeline/ between two commands
    # would change every image's cache key (the key includes the code) and recompute
    CODE = tmp / "code"
    for pkg in ("pipeline", "flows"):
        shutil.copytree(ROOT / pkg, CODE / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    images = tmp / "images"
    simulate_folder(images, truth_dir=tmp / "truth", shape=(64, 64),
                    cases=[("smooth", 2), ("step", 1)], seed=0)
    broken = tmp / "broken"
    broken.mkdir()
    for name in ("a.tif", "b.tif"):
        (broken / name).write_text("not a tiff")
    cli = [sys.executable, "-m", "flows.cli", "run"]
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def add(name: str, seconds: tuple[float, float]) -> None:
        times.setdefault(name, []).append(seconds[0])
        cpu.setdefault(name, []).append(seconds[1])
        print(f"{name:28s} {seconds[0]:6.1f} s wall {seconds[1]:6.1f} s CPU "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)

    server, url = _start_server(tmp / "server_home")
    try:
        for i in range(args.repeats):
            home = tmp / f"home{i}"  # a fresh Prefect home each time: a cold ephemeral start
            add("empty flow, ephemeral", _timed([sys.executable, "-c", EMPTY_FLOW],
                                                _env(home, None)))
            add("empty flow, server", _timed([sys.executable, "-c", EMPTY_FLOW],
                                             _env(home, url)))
            for mode, api in (("ephemeral", None), ("server", url)):
                out = tmp / f"out-{mode}-{i}"
                add(f"first run, {mode}", _timed([*cli, str(images), "--out", str(out), *FAST],
                                                 _env(home, api)))
            add("up-to-date re-run", _timed([*cli, str(images), "--out", str(out), *FAST],
                                            _env(home, None)))
            add("refused files only", _timed([*cli, str(broken), "--out", str(tmp / "o"),
                                              *FAST], _env(home, None), ok=(1,)))
    finally:
        server.terminate()
        server.wait(timeout=60)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "what": "wall seconds of whole commands (fresh processes), median of repeats",
        "repeats": args.repeats, "seconds": times, "median_s": med,
        "cpu_seconds": cpu, "median_cpu_s": med_cpu,
        "note": "CPU seconds (user + system, the command and its children; for the ephemeral "
                "server runs this includes the server's own process) depend little on other "
                "load on the machine; on an idle machine a single-threaded command takes about "
                "its CPU time",
        "ratios": {
            "up-to-date re-run / empty flow, ephemeral":
                med["up-to-date re-run"] / med["empty flow, ephemeral"],
            "first run, server / first run, ephemeral":
                med["first run, server"] / med["first run, ephemeral"],
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_at_end": os.getloadavg(),
                    "shared": "2 cores shared with other jobs: wall times include waiting"},
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["median_s"], indent=2))
    print(json.dumps(result["median_cpu_s"], indent=2))
    print(json.dumps(result["ratios"], indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
