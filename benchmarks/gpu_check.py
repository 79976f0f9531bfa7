"""The GPU path, measured once on a CUDA machine -> JSON for docs/gpu.md.

One script, run on a machine with CUDA (it refuses to run without):

1. the test suite's ``gpu``-marked tests (``pytest -m gpu``);
2. the paper benchmarks' fourth-order problem at 128² and 256²: time per step of every arm
   (autograd, DeepXDE where installed, the mollifier layer; alternating, CUDA-synchronised)
   and peak CUDA memory of one step above the baseline in a fresh process (an out-of-memory is
   recorded, not fatal); a short training side by side at 128² (r against the truth);
3. the fit of one 1024² two-channel plane with ``method="neural"`` (and the closed form, for
   scale) on CUDA: seconds and peak CUDA memory; and CPU-vs-CUDA agreement on one tile.

Each part is written to the JSON as soon as it ends, so a run stopped by a timeout still
leaves what it measured. Usage::

    python benchmarks/gpu_check.py --out "$OUT/gpu.json"        # about 8-10 min on one GPU
    python benchmarks/gpu_check.py --out /tmp/gpu.json --quick  # smaller, a smoke test

The numbers go into docs/gpu.md by hand, with the JSON beside it (docs/gpu.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

PIXEL_SIZE_UM = 0.02


def _save(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))


def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    import torch

    if _cuda(device):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if _cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if _cuda(device) else None


def machine(device: str) -> dict[str, Any]:
    import torch

    if not _cuda(device):
        return {"device": device, "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def gpu_tests(timeout_s: float) -> dict[str, Any]:
    """``pytest -m gpu`` over tests/ (exit code 5: none collected)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "tests", "-m", "gpu", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=--strict-markers -ra"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))],
            "seconds": time.perf_counter() - t0}


def paper(sizes: tuple[int, ...], train_budget_s: float, device: str = "cuda") -> dict[str, Any]:
    """Time and memory per step of every arm at each size; a short training at the first."""
    import torch

    from benchmarks.paper import (
        TrainSettings,
        make_problem,
        measure_memory,
        time_alternating,
        train_alternating,
    )
    from benchmarks.paper.arms import make_arm
    from benchmarks.paper.deepxde_arm import deepxde_available

    dev = torch.device(device)
    why = deepxde_available()
    arms = ("autograd", "mollifier") if why else ("autograd", "deepxde", "mollifier")
    out: dict[str, Any] = {"arms": arms, "deepxde_missing": why, "sizes": {}}
    for n in sizes:
        problem = make_problem("chromatin", n, noise=0.05, pixel_size_um=0.02)
        settings = TrainSettings(warmup=0)
        row: dict[str, Any] = {}
        for arm in arms:
            mem = measure_memory(problem, arm, settings, device=device, steps=1, timeout_s=300)
            row[arm] = {"memory": mem, "peak_bytes": mem.get("peak_bytes")}
        runnable = [a for a in arms if "error" not in row[a]["memory"]]
        try:
            states = {a: make_arm(a, problem, settings, dev) for a in runnable}
            steps = {"autograd": 1, "deepxde": 1, "mollifier": 5}
            timing = time_alternating(states, blocks=3, steps_per_block=steps)
            for a in runnable:
                row[a].update(s_per_iter=timing[a]["median_s"], min_s=timing[a]["min_s"])
        except torch.cuda.OutOfMemoryError as exc:
            row["timing_error"] = f"OutOfMemoryError: {exc}"[:300]
        finally:
            states = {}
            if _cuda(device):
                torch.cuda.empty_cache()
        mo = row["mollifier"].get("s_per_iter")
        for a in runnable:
            if a != "mollifier" and mo and row[a].get("s_per_iter"):
                row[a]["mollifier_faster_by"] = row[a]["s_per_iter"] / mo
            if a != "mollifier" and row[a]["peak_bytes"] and row["mollifier"]["peak_bytes"]:
                row[a]["mollifier_lighter_by"] = (row[a]["peak_bytes"]
                                                  / row["mollifier"]["peak_bytes"])
        out["sizes"][str(n)] = row
    n = sizes[0]
    problem = make_problem("chromatin", n, noise=0.05, pixel_size_um=0.02)
    settings = TrainSettings(warmup=100, residual_weight=100.0)
    states = {a: make_arm(a, problem, settings, dev) for a in arms}
    runs = train_alternating(states, max_iters=3000, budget_s=train_budget_s, eval_every=50)
    out["training"] = {"n": n, "budget_s": train_budget_s, **{
        a: {k: r[k] for k in ("r", "iterations", "train_s", "s_per_iter", "time_to_target_s")}
        for a, r in runs.items()}}
    return out


def _plane(size: int, seed: int = 0) -> np.ndarray:
    """A two-channel ``(phi_h, phi_w)`` plane: one simulated 512² case, mirrored and tiled to
    ``size``, with 2 % Gaussian noise on each field."""
    from pipeline.simulate import simulate_case

    b = min(512, size)
    case = simulate_case(kind="lognormal", channels=2, noise=0.02, shape=(b, b), seed=seed,
                         pixel_size_um=PIXEL_SIZE_UM)
    f = np.stack([case.phi_h, case.phi_w])
    period = np.concatenate([f, f[:, :, ::-1]], axis=2)
    period = np.concatenate([period, period[:, ::-1]], axis=1)
    reps = -(-size // (2 * b))
    f = np.tile(period, (1, reps, reps))[:, :size, :size]
    rng = np.random.default_rng(seed)
    return f + 0.02 * f.std(axis=(1, 2), keepdims=True) * rng.standard_normal(f.shape)


def _fit_plane():
    try:
        from pipeline.estimate import fit_plane
    except ImportError:  # before the fit path moved
        from pipeline.tiling import fit_plane
    return fit_plane


def _get(res: Any, key: str) -> np.ndarray:
    return np.asarray(res[key] if isinstance(res, dict) else getattr(res, key), dtype=np.float64)


def neural(size: int, tile: int, device: str = "cuda") -> dict[str, Any]:
    """The 1024² two-channel fit on CUDA (neural and closed form), and CPU vs CUDA on a tile."""
    from pipeline.config import Settings
    from pipeline.physics import ChromatinModel

    fit_plane = _fit_plane()
    fields = _plane(size)
    out: dict[str, Any] = {"size": size}
    for method in ("closed-form", "neural"):
        _reset_peak(device)
        t0 = time.perf_counter()
        try:
            res = fit_plane(fields, ChromatinModel(), PIXEL_SIZE_UM,
                            Settings(method=method, device=device))
            _sync(device)
            lam = _get(res, "mean")
            out[method] = {"seconds": time.perf_counter() - t0,
                           "cuda_peak_bytes": _peak(device),
                           "fraction_identifiable": float(np.isfinite(lam).mean())}
        except Exception as exc:  # record and go on: OOM, a CUDA error
            out[method] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        out["cpu_vs_cuda_tile"] = _cpu_vs_device(fit_plane, fields[:, :tile, :tile], device)
    except Exception as exc:  # keep the plane's numbers above
        out["cpu_vs_cuda_tile"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


def _cpu_vs_device(fit_plane, crop: np.ndarray, device: str) -> dict[str, Any]:
    """The neural fit of one tile on the CPU and on ``device``: same mask, largest differences."""
    from pipeline.config import Settings
    from pipeline.physics import ChromatinModel

    crop = np.ascontiguousarray(crop)
    tile = crop.shape[-1]
    maps = {}
    for dev in ("cpu", device):
        t0 = time.perf_counter()
        res = fit_plane(crop, ChromatinModel(), PIXEL_SIZE_UM,
                        Settings(method="neural", device=dev))
        _sync(dev)
        maps[dev] = (_get(res, "mean"), _get(res, "std"), time.perf_counter() - t0)
    (m_cpu, s_cpu, t_cpu), (m_gpu, s_gpu, t_gpu) = maps["cpu"], maps[device]
    ok = np.isfinite(m_cpu) & np.isfinite(m_gpu)
    return {
        "tile": tile, "seconds_cpu": t_cpu, "seconds_cuda": t_gpu,
        "same_mask": bool((np.isfinite(m_cpu) == np.isfinite(m_gpu)).all()),
        "max_abs_diff_mean": float(np.abs(m_cpu - m_gpu)[ok].max()) if ok.any() else None,
        "median_abs_mean": float(np.median(np.abs(m_cpu[ok]))) if ok.any() else None,
        "max_abs_diff_std": float(np.nanmax(np.abs(s_cpu - s_gpu)[ok])) if ok.any() else None,
        "r_mean": float(np.corrcoef(m_cpu[ok], m_gpu[ok])[0, 1]) if ok.sum() > 2 else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu.json")
    ap.add_argument("--quick", action="store_true", help="64² / 128², 512² plane: a smoke test")
    ap.add_argument("--train-budget", type=float, default=30.0,
                    help="seconds of training per arm at the first size")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: tests,paper,neural")
    ap.add_argument("--device", default="cuda",
                    help="cuda (default); cpu only to try the script itself (with --quick)")
    ap.add_argument("--sizes", default=None, help="grid sizes of part 2, e.g. 32,64")
    ap.add_argument("--plane", type=int, default=None, help="side of the part-3 plane")
    args = ap.parse_args(argv)
    import torch

    if _cuda(args.device) and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it on a GPU machine")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = (tuple(int(v) for v in args.sizes.split(",")) if args.sizes else
             (64, 128) if args.quick else (128, 256))
    plane = args.plane or (512 if args.quick else 1024)
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "machine": machine(args.device), "quick": args.quick}
    parts = (("tests", lambda: gpu_tests(timeout_s=240)),
             ("paper", lambda: paper(sizes, args.train_budget, args.device)),
             ("neural", lambda: neural(plane, min(256, plane), args.device)))
    for name, part in parts:
        if name in skip:
            continue
        t0 = time.perf_counter()
        print(f"{time.strftime('%H:%M:%S')} {name} ...", flush=True)
        try:
            results[name] = part()
        except Exception as exc:  # keep what the other parts measure
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        results[name]["wall_s"] = time.perf_counter() - t0
        _save(args.out, results)
        print(json.dumps(results[name], default=str)[:2000], flush=True)
    return results


if __name__ == "__main__":
    main()
