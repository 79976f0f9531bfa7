"""The benchmark suite: :func:`run_benchmarks` over a configuration (presets in
:mod:`benchmarks.paper.presets`: smoke, quick, full, peer; their names are re-exported here).

Three parts, each run for every arm with the same network and optimiser (autograd, the
mollifier layer, and DeepXDE where it is installed and the problem is 2-D):

1. **Problems.** The three inverse problems at two noise levels: the arms are trained in
   alternating chunks; per arm the final Pearson r of λ with the truth, the median time per
   step, the time to r ≥ ``target_r`` and (in a fresh process) the peak memory.
2. **Scaling with grid size.** The fourth-order chromatin problem at growing grids: time per
   step (alternating arms) and peak memory; autograd is skipped above ``autograd_max_size``.
3. **Scaling with derivative order.** A derivative probe (orders 1, 2, 4) on one grid.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.device import resolve_device

from .arms import TrainSettings, make_arm
from .measure import machine_info, measure_memory, time_alternating, train_alternating
from .presets import BenchConfig, Mode, ProblemSpec, config_for
from .problems import make_problem, probe_problem

__all__ = ["Mode", "ProblemSpec", "BenchConfig", "config_for", "summarize", "run_benchmarks"]

log = logging.getLogger(__name__)

Progress = Callable[[dict], None] | None


def _emit(progress: Progress, **event: Any) -> None:
    log.info("bench: %s", event)
    if progress is not None:
        progress(event)


def _settings(cfg: BenchConfig, spec: ProblemSpec | None = None) -> TrainSettings:
    s = TrainSettings(warmup=cfg.warmup, seed=cfg.seed)
    if spec is not None:
        s = replace(s, residual_weight=spec.residual_weight, lr=spec.lr)
    return s


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or a != a or b != b:
        return None
    return float(a / b)


def _arms_for(problem, cfg: BenchConfig, skipped: dict[str, str]) -> tuple[str, ...]:
    """The configured arms that can run on ``problem``; the others go to ``skipped`` with why."""
    arms = []
    for arm in cfg.arms:
        if arm == "deepxde":
            from .deepxde_arm import deepxde_available

            why = deepxde_available()
            if why is None and problem.ndim != 2:
                why = "the DeepXDE arm covers the 2-D problems"
            if why is not None:
                skipped[arm] = why
                continue
        arms.append(arm)
    return tuple(arms)


# --------------------------------------------------------------------------- part 1
def _run_problem(spec, noise, cfg, device, threads, progress, memory_cache) -> dict[str, Any]:
    problem = make_problem(spec.name, spec.n, noise=noise, seed=cfg.seed, **spec.options)
    settings = _settings(cfg, spec)
    label = f"{spec.name} n={spec.n} noise={noise:g}"
    _emit(progress, event="stage", stage="problem", label=label)
    skipped: dict[str, str] = {}
    arms = _arms_for(problem, cfg, skipped)
    states = {arm: make_arm(arm, problem, settings, device) for arm in arms}
    # an outside peer gets autograd's budget (the same derivative route, nested autograd)
    budget = {arm: spec.budget_s.get(arm, spec.budget_s["autograd"]) for arm in arms}
    runs = train_alternating(
        states, max_iters=cfg.max_iters, budget_s=budget, eval_every=cfg.eval_every,
        target_r=cfg.target_r, progress=progress, label=label,
    )
    del states
    key = (spec.name, spec.n)
    if cfg.problem_memory:
        if key not in memory_cache:
            memory_cache[key] = {
                arm: measure_memory(problem, arm, settings, device=device, threads=threads,
                                    steps=cfg.memory_steps)
                for arm in arms
            }
            _emit(progress, event="memory", label=label, result=memory_cache[key])
        for arm in arms:
            runs[arm]["memory"] = memory_cache[key][arm]
    ag, mo = runs["autograd"], runs["mollifier"]
    equal = [row for row in mo["history"] if row[0] <= ag["iterations"]]
    ratios = {
        "s_per_iter": _ratio(ag["s_per_iter"], mo["s_per_iter"]),
        "memory": _ratio(ag.get("memory", {}).get("peak_bytes"),
                         mo.get("memory", {}).get("peak_bytes")),
    }
    if "deepxde" in runs:
        dx = runs["deepxde"]
        ratios["deepxde_s_per_iter"] = _ratio(dx["s_per_iter"], mo["s_per_iter"])
        ratios["deepxde_memory"] = _ratio(dx.get("memory", {}).get("peak_bytes"),
                                          mo.get("memory", {}).get("peak_bytes"))
    return {
        "problem": spec.name,
        "order": problem.order,
        "grid": list(problem.grid),
        "pixel_size": problem.pixel_size_um,
        "delta": problem.delta_um,
        "noise": noise,
        "noise_sigma": problem.noise_sigma,
        "settings": asdict(settings),
        "budget_s": budget,
        "arms": runs,
        "skipped_arms": skipped,
        "ratios": ratios,
        "mollifier_r_at_autograd_iterations": equal[-1][3] if equal else None,
    }


# --------------------------------------------------------------------------- parts 2, 3
def _scaling_point(
    problem, cfg, device, threads, arms, progress, label, *, memory: bool = True
) -> list[dict]:
    settings = replace(_settings(cfg), warmup=0)
    skipped: dict[str, str] = {}
    runnable = _arms_for(problem, cfg, skipped)
    arms = tuple(a for a in arms if a in runnable)
    in_child = {"deepxde"} if max(problem.grid) > cfg.deepxde_in_process_max else set()
    states = {arm: make_arm(arm, problem, settings, device) for arm in arms
              if arm not in in_child}
    steps = {"autograd": 1, "deepxde": 1, "mollifier": cfg.mollifier_steps_per_block}
    timing = time_alternating(states, blocks=cfg.timing_blocks, steps_per_block=steps)
    del states
    cap = int(cfg.memory_cap_gb * 2**30) if cfg.memory_cap_gb else None
    rows = []
    for arm in cfg.arms:
        row: dict[str, Any] = {"arm": arm}
        if arm in arms:
            if arm in timing:
                row.update(s_per_iter=timing[arm]["median_s"], min_s=timing[arm]["min_s"],
                           n_steps=timing[arm]["n"])
            if memory or arm in in_child:
                n_steps = max(cfg.memory_steps, 2) if arm in in_child else cfg.memory_steps
                mem = measure_memory(problem, arm, settings, device=device, threads=threads,
                                     steps=n_steps, max_bytes=cap)
                row["peak_bytes"] = mem.get("peak_bytes")
                row["memory"] = mem
                if arm in in_child and mem.get("step_s"):
                    # the second step (the first pays one-off set-up): not alternating
                    row.update(s_per_iter=mem["step_s"][-1], min_s=min(mem["step_s"][1:]),
                               n_steps=len(mem["step_s"]) - 1, timed="in its memory process")
                elif arm in in_child:
                    row["skipped"] = f"did not run: {mem.get('error')}"
        else:
            row["skipped"] = skipped.get(arm, f"{arm} is skipped at this size (too slow / too "
                                              "much memory)")
        rows.append(row)
    _emit(progress, event="scaling", label=label, rows=rows)
    return rows


def _run_scaling(cfg, device, threads, progress) -> dict[str, list[dict]]:
    by_size = []
    for n in cfg.scaling_sizes:
        problem = make_problem("chromatin", n, noise=0.05, seed=cfg.seed,
                               pixel_size_um=cfg.scaling_pixel_um)
        arms = cfg.arms if n <= cfg.autograd_max_size else ("mollifier",)
        for row in _scaling_point(problem, cfg, device, threads, arms, progress, f"size {n}"):
            by_size.append({"n": n, **row})
    by_order = []
    for order in cfg.orders:
        problem = probe_problem(cfg.order_size, order=order, noise=0.05, seed=cfg.seed)
        for row in _scaling_point(problem, cfg, device, threads, cfg.arms, progress,
                                  f"order {order}", memory=cfg.order_memory):
            by_order.append({"order": order, "n": cfg.order_size, **row})
    return {"size": by_size, "order": by_order}


def _pair(rows: list[dict], key: str, value: int) -> dict[str, dict]:
    return {r["arm"]: r for r in rows if r[key] == value}


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on the fourth-order problem, checked against this run."""
    out: dict[str, Any] = {}
    at = _pair(results["scaling"]["size"], "n", 128)
    if "s_per_iter" in at.get("autograd", {}) and "s_per_iter" in at.get("mollifier", {}):
        speed = _ratio(at["autograd"]["s_per_iter"], at["mollifier"]["s_per_iter"])
        mem = _ratio(at["autograd"].get("peak_bytes"), at["mollifier"].get("peak_bytes"))
        out["speed_128"] = {"value": speed, "target": 30.0, "met": bool(speed and speed >= 30)}
        out["memory_128"] = {"value": mem, "target": 20.0, "met": bool(mem and mem >= 20)}
    if "s_per_iter" in at.get("deepxde", {}) and "s_per_iter" in at.get("mollifier", {}):
        speed = _ratio(at["deepxde"]["s_per_iter"], at["mollifier"]["s_per_iter"])
        mem = _ratio(at["deepxde"].get("peak_bytes"), at["mollifier"].get("peak_bytes"))
        out["deepxde_speed_128"] = {"value": speed, "target": 30.0,
                                    "met": bool(speed and speed >= 30)}
        out["deepxde_memory_128"] = {"value": mem, "target": 30.0,
                                     "met": bool(mem and mem >= 30)}
    rs = [p["arms"]["mollifier"]["r"] for p in results["problems"] if p["order"] == 4]
    if rs:
        out["mollifier_r_order4"] = {"value": min(rs), "target": 0.95, "met": min(rs) >= 0.95}
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers: per problem and noise level the autograd/mollifier (and
    DeepXDE/mollifier) ratios of time per step and peak memory and every arm's r; the targets;
    time and memory at 128x128."""
    rows = []
    for p in results["problems"]:
        ag, mo = p["arms"]["autograd"], p["arms"]["mollifier"]
        rows.append({
            "problem": p["problem"], "order": p["order"], "grid": p["grid"], "noise": p["noise"],
            "speedup_per_step": p["ratios"]["s_per_iter"], "memory_ratio": p["ratios"]["memory"],
            "r_autograd": ag["r"], "steps_autograd": ag["iterations"],
            "r_mollifier": mo["r"], "steps_mollifier": mo["iterations"],
            "r_mollifier_at_autograd_steps": p["mollifier_r_at_autograd_iterations"],
        })
        if "deepxde" in p["arms"]:
            dx = p["arms"]["deepxde"]
            rows[-1].update(r_deepxde=dx["r"], steps_deepxde=dx["iterations"],
                            speedup_vs_deepxde=p["ratios"].get("deepxde_s_per_iter"),
                            memory_ratio_vs_deepxde=p["ratios"].get("deepxde_memory"))
    at = _pair(results["scaling"]["size"], "n", 128)
    return {
        "problems": rows,
        "targets": results.get("targets", {}),
        "order4_128": {arm: {k: r.get(k) for k in ("s_per_iter", "peak_bytes", "skipped")}
                       for arm, r in at.items()},
    }


def run_benchmarks(
    *,
    quick: bool,
    out_dir: Path,
    device: str = "auto",
    progress: Progress = None,
    config: BenchConfig | None = None,
    threads: int | None = None,
    report: bool | None = None,
    img_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the paper's benchmarks (autograd against the mollifier layer) and save them.

    Parameters
    ----------
    quick
        The quick preset (under 5 minutes on two CPU cores) instead of the full one.
    out_dir
        Where ``benchmarks.json`` (and, for a report, ``benchmarks.md`` and PNGs) go.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``... (:func:`pipeline.device.resolve_device`).
    progress
        Called with one ``dict`` per event (stage, training chunk, measurement).
    config
        Overrides the preset chosen by ``quick`` (e.g. ``config_for("smoke")``).
    threads
        ``torch.set_num_threads`` for the run (restored afterwards) and the memory children.
    report
        Write the markdown report and plots; default: only for the full preset.
    img_dir
        Folder of the PNGs (default ``out_dir / "img"``).

    Returns
    -------
    dict
        ``machine``, ``config``, ``problems`` (part 1), ``scaling`` (parts 2-3), ``targets``,
        ``summary`` (:func:`summarize`), ``wall_s``; the same content as ``benchmarks.json``.
    """
    import torch

    cfg = config if config is not None else config_for("quick" if quick else "full")
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    try:
        results: dict[str, Any] = {
            "mode": cfg.mode,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(dev),
            "config": asdict(cfg),
        }
        memory_cache: dict = {}
        problems = []
        for spec in cfg.problems:
            for noise in cfg.noise_levels:
                problems.append(_run_problem(spec, noise, cfg, dev, threads, progress,
                                             memory_cache))
        results["problems"] = problems
        _emit(progress, event="stage", stage="scaling")
        results["scaling"] = _run_scaling(cfg, dev, threads, progress)
        results["targets"] = _targets(results)
        results["summary"] = summarize(results)
    finally:
        torch.set_num_threads(old_threads)
    results["wall_s"] = time.perf_counter() - t0
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=1, default=str))
    if report if report is not None else cfg.mode == "full":
        from .report import write_report

        write_report(results, out_dir, img_dir=img_dir)
    _emit(progress, event="done", wall_s=results["wall_s"])
    return results
