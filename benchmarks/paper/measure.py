"""Measurement: peak memory in a fresh process, alternating per-iteration timing, training
with a time budget, and a description of the machine.

Memory
    A process's resident-set high-water mark only grows, so each measurement runs in a fresh
    process (``multiprocessing`` spawn). The child builds the arm, reads its baseline just
    before the first step (and, on Linux, resets the high-water mark to the current RSS via
    ``/proc/self/clear_refs``), runs a few steps and reports ``peak - baseline``. On CUDA it
    reports ``torch.cuda.max_memory_allocated`` above the allocation at the baseline.
Time
    The arms are stepped in alternating blocks (A, B, A, B, ...) in one process, so that a
    noisy machine slows both alike; each step is timed alone and the median is reported.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .arms import ArmState, TrainSettings, make_arm
from .problems import Problem

__all__ = [
    "machine_info",
    "rss_bytes",
    "measure_memory",
    "time_alternating",
    "train_alternating",
]

log = logging.getLogger(__name__)

Progress = Callable[[dict], None] | None


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident set size of this process in bytes.

    From ``/proc/self/status`` (VmRSS, VmHWM) where available, else ``getrusage`` for both.

    >>> cur, peak = rss_bytes()
    >>> 0 < cur <= peak
    True
    """
    cur, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    if cur is not None and hwm is not None:
        return cur * 1024, hwm * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak, peak


def _reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def machine_info(device: Any = None) -> dict[str, Any]:
    """CPU model, core counts, memory, torch version and thread count, and the device."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1e9, 1) if mem else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "device": str(device) if device is not None else "cpu",
    }
    if device is not None and str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# --------------------------------------------------------------------------- memory
def _memory_child(problem, arm, settings, device, names, steps, threads, max_bytes,
                  queue) -> None:
    try:
        import torch

        if max_bytes:  # a cap on the address space: a MemoryError here, not the OOM killer
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (int(max_bytes), int(max_bytes)))
        if threads:
            torch.set_num_threads(threads)
        dev = torch.device(device)
        state = make_arm(arm, problem, settings, dev, names=names)
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        reset = _reset_peak()
        base_rss, base_peak = rss_bytes()
        baseline = base_rss if reset else base_peak
        step_s = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state.step()
            if cuda:
                torch.cuda.synchronize(dev)
            step_s.append(time.perf_counter() - t0)
        out = {"rss_baseline_bytes": baseline, "hwm_reset": reset, "step_s": step_s}
        cur, peak = rss_bytes()
        out["rss_peak_bytes"] = peak
        out["peak_bytes"] = max(peak - baseline, 0)
        if cuda:
            torch.cuda.synchronize(dev)
            out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(dev) - base
            out["peak_bytes"] = out["cuda_peak_bytes"]
        queue.put(("ok", out))
    except BaseException as exc:  # report every failure (incl. MemoryError) to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def measure_memory(
    problem: Problem,
    arm: str,
    settings: TrainSettings,
    *,
    device: Any = "cpu",
    names: Sequence[str] | None = None,
    steps: int = 2,
    threads: int | None = None,
    timeout_s: float = 600.0,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Peak memory of ``steps`` training steps of ``arm`` above its baseline, in a fresh process.

    ``settings.warmup`` is overridden to 0 so that every measured step takes derivatives.
    ``max_bytes`` caps the child's address space (``RLIMIT_AS``): an arm that needs more fails
    with a ``MemoryError`` that is reported, instead of the machine's OOM killer picking a
    process. The seconds of each step are reported too (``step_s``).

    Returns ``{"peak_bytes", "rss_baseline_bytes", "rss_peak_bytes", "hwm_reset"}`` (plus
    ``"cuda_peak_bytes"`` on CUDA), or ``{"error": message}``.
    """
    from dataclasses import replace

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    settings = replace(settings, warmup=0)
    args = (problem, arm, settings, str(device), tuple(names) if names else None, steps, threads,
            max_bytes)
    proc = ctx.Process(target=_memory_child, args=args + (queue,), daemon=True)
    proc.start()
    try:
        status, payload = queue.get(timeout=timeout_s)
    except Exception:  # queue.Empty, or the child died without reporting
        status, payload = "error", f"no report within {timeout_s:.0f} s (exit {proc.exitcode})"
    proc.join(timeout=30)
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=10)
    if status != "ok":
        log.warning("memory measurement of %s failed: %s", arm, payload)
        return {"error": str(payload)}
    return payload


# --------------------------------------------------------------------------- time
def _sync(state: ArmState) -> None:
    if state.coords.device.type == "cuda":
        import torch

        torch.cuda.synchronize(state.coords.device)


def _timed_step(state: ArmState) -> tuple[float, dict[str, float]]:
    _sync(state)
    t0 = time.perf_counter()
    parts = state.step()
    _sync(state)
    return time.perf_counter() - t0, parts


def time_alternating(
    states: Mapping[str, ArmState],
    *,
    blocks: int = 3,
    steps_per_block: Mapping[str, int] | int = 1,
    discard_blocks: int = 1,
) -> dict[str, dict[str, Any]]:
    """Median seconds per step of each arm, stepping the arms in alternating blocks.

    The first ``discard_blocks`` blocks are warm-up and are not counted.
    """
    times: dict[str, list[float]] = {name: [] for name in states}
    for block in range(blocks + discard_blocks):
        for name, state in states.items():
            k = steps_per_block if isinstance(steps_per_block, int) else steps_per_block[name]
            for _ in range(k):
                dt, _ = _timed_step(state)
                if block >= discard_blocks:
                    times[name].append(dt)
    return {
        name: {"median_s": float(np.median(t)), "min_s": float(np.min(t)), "n": len(t)}
        for name, t in times.items()
    }


def train_alternating(
    states: Mapping[str, ArmState],
    *,
    max_iters: int,
    budget_s: float | Mapping[str, float],
    eval_every: int = 25,
    target_r: float = 0.9,
    progress: Progress = None,
    label: str = "",
) -> dict[str, dict[str, Any]]:
    """Train the arms in alternating chunks of ``eval_every`` steps until each reaches
    ``max_iters`` or spends ``budget_s`` seconds (a number, or one per arm) of training time
    (evaluation not counted).

    Returns per arm: ``history`` (rows ``[iteration, train_s, loss, r]``), ``r`` (final),
    ``iterations``, ``train_s``, ``s_per_iter`` (median over steps that take derivatives,
    after the first 3), ``time_to_target_s`` and ``iters_to_target`` (``None`` when not
    reached) and ``stopped`` (``"iterations"`` or ``"budget"``).
    """
    runs = {
        name: {"history": [[0, 0.0, float("nan"), st.r()]], "train_s": 0.0, "step_times": [],
               "time_to_target_s": None, "iters_to_target": None, "stopped": None}
        for name, st in states.items()
    }
    budgets = {n: budget_s if isinstance(budget_s, (int, float)) else budget_s[n] for n in states}
    active = list(states)
    while active:
        for name in list(active):
            st, run, budget = states[name], runs[name], budgets[name]
            loss = float("nan")
            for _ in range(eval_every):
                dt, parts = _timed_step(st)
                run["train_s"] += dt
                loss = parts["loss"]
                if st.iteration > st.settings.warmup + 3:
                    run["step_times"].append(dt)
                if st.iteration >= max_iters or run["train_s"] >= budget:
                    break
            r = st.r()
            run["history"].append([st.iteration, run["train_s"], loss, r])
            if run["time_to_target_s"] is None and r >= target_r:
                run["time_to_target_s"], run["iters_to_target"] = run["train_s"], st.iteration
            if progress is not None:
                progress({"event": "train", "label": label, "arm": name,
                          "iteration": st.iteration, "train_s": run["train_s"], "r": r,
                          "loss": loss})
            if st.iteration >= max_iters or run["train_s"] >= budget:
                run["stopped"] = "iterations" if st.iteration >= max_iters else "budget"
                active.remove(name)
    for name, run in runs.items():
        t = run.pop("step_times")
        run["s_per_iter"] = float(np.median(t)) if t else float("nan")
        run["iterations"] = states[name].iteration
        run["r"] = run["history"][-1][3]
        run["target_r"] = target_r
    return runs
