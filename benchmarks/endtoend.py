"""End-to-end throughput (megapixels per minute) and peak memory of the per-image stages.

Every measurement runs :func:`pipeline.process.process_image` (ingest → denoise → fit →
segment → assemble) on one TIFF in a **fresh subprocess**, so imports, caches and the memory
high-water mark of one run never leak into the next. Wall time is measured inside the child
around ``process_image`` (interpreter start and imports excluded); the peak resident set size
is the child's own ``getrusage(RUSAGE_SELF).ru_maxrss`` at its end. The child runs this file
as a script and calls only the public :func:`pipeline.process.process_image`: a benchmark
never swaps or patches product code.

Synthetic images come from :func:`pipeline.simulate.simulate_case`; a bigger image is a
mirrored tiling of one simulated case (mirroring keeps the fields continuous at the seams),
written with :func:`pipeline.io.write_tiff`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PIXEL_SIZE_UM", "measure", "synthetic_image"]

PIXEL_SIZE_UM = 0.02


def synthetic_image(path: str | Path, size: int, *, base: int = 512, seed: int = 0,
                    noise: float = 0.02) -> Path:
    """Write a two-channel ``size x size`` uint16 TIFF built from one ``base``² simulated case.

    The case is mirrored into a ``2 base`` period and tiled, then cropped to ``size``.
    """
    from pipeline.io import write_tiff
    from pipeline.simulate import simulate_case

    b = min(base, size)
    img = simulate_case(kind="lognormal", channels=2, noise=noise, shape=(b, b), seed=seed,
                        pixel_size_um=PIXEL_SIZE_UM).image
    period = np.concatenate([img, img[:, :, ::-1]], axis=2)
    period = np.concatenate([period, period[:, ::-1]], axis=1)
    reps = -(-size // (2 * b))
    data = np.tile(period, (1, reps, reps))[:, :size, :size]
    return write_tiff(path, np.ascontiguousarray(data), axes="CYX", pixel_size_um=PIXEL_SIZE_UM)


def measure(image: str | Path, *, method: str = "closed-form", denoise: str = "nl-means",
            threads: int | None = None, timeout_s: float = 900.0) -> dict[str, Any]:
    """Run every stage on ``image`` in a fresh subprocess; seconds, MP/min and peak RSS.

    Returns
    -------
    dict
        ``method``, ``denoise``, ``shape``, ``megapixels``, ``seconds`` (the
        ``process_image`` call), ``mp_per_min``, ``timings_s`` (per stage), ``peak_rss_mb``.
    """
    args = {"image": str(image), "method": method, "denoise": denoise}
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="chromarate-bench-") as out:
        args["out"] = out
        # run this file as a script in a fresh interpreter: nothing of this process leaks in
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return _result(args, proc, stdout, stderr)


def _result(args: dict, proc: subprocess.Popen, stdout: bytes, stderr: bytes) -> dict[str, Any]:
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n"
                           f"{stderr.decode(errors='replace')[-3000:]}")
    res = json.loads(stdout.decode().strip().splitlines()[-1])
    mp = res["shape"][-1] * res["shape"][-2] * res["n_planes"] / 1e6
    return {"method": args["method"], "denoise": args["denoise"],
            "shape": res["shape"], "megapixels": mp, "seconds": res["seconds"],
            "mp_per_min": 60.0 * mp / res["seconds"], "timings_s": res["timings_s"],
            "peak_rss_mb": res["peak_rss_mb"]}


def _child(spec: str) -> None:
    """Body of one measurement (``python benchmarks/endtoend.py '<json>'``)."""
    import resource

    from pipeline import process
    from pipeline.config import Settings

    args = json.loads(spec)
    settings = Settings(method=args["method"], device="cpu", run={"denoise": args["denoise"]})
    t = time.perf_counter()
    res = process.process_image(args["image"], args["out"], settings, force=True)
    seconds = time.perf_counter() - t
    # ru_maxrss of this process (KiB on Linux): the whole run's high-water mark
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    shape = res["shape"]
    n_planes = int(res.get("n_planes") or 1)
    print(json.dumps({"seconds": seconds, "timings_s": res["timings_s"], "shape": shape,
                      "n_planes": n_planes, "peak_rss_mb": peak}))


if __name__ == "__main__":
    _child(sys.argv[1])
