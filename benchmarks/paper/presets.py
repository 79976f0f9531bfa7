"""The benchmark suite's configurations: :class:`BenchConfig` and its presets (:func:`config_for`).

What each part of the suite does with them: :mod:`benchmarks.paper.suite`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .arms import ALL_ARMS

__all__ = ["Mode", "ProblemSpec", "BenchConfig", "config_for"]

Mode = Literal["smoke", "quick", "full", "peer"]


@dataclass(frozen=True)
class ProblemSpec:
    """One problem of part 1: grid size, builder options, loss weight and time budgets."""

    name: str
    n: int
    options: dict[str, Any] = field(default_factory=dict)
    residual_weight: float = 10.0
    lr: float = 3e-3
    budget_s: dict[str, float] = field(default_factory=lambda: {"autograd": 60.0,
                                                                "mollifier": 60.0})


@dataclass(frozen=True)
class BenchConfig:
    """Everything a benchmark run does; :func:`config_for` gives the three presets."""

    mode: str
    problems: tuple[ProblemSpec, ...]
    noise_levels: tuple[float, ...] = (0.01, 0.05)
    max_iters: int = 1200
    warmup: int = 100
    eval_every: int = 25
    target_r: float = 0.9
    problem_memory: bool = True
    scaling_sizes: tuple[int, ...] = (32, 64, 128, 256)
    scaling_pixel_um: float = 0.02
    autograd_max_size: int = 128
    orders: tuple[int, ...] = (1, 2, 4)
    order_size: int = 64
    order_memory: bool = True
    timing_blocks: int = 3
    mollifier_steps_per_block: int = 5
    memory_steps: int = 2
    seed: int = 0
    arms: tuple[str, ...] = ALL_ARMS
    # DeepXDE above this grid is timed in its fresh memory process only (not alternating), so
    # that its step never shares the main process's memory with the others
    deepxde_in_process_max: int = 1 << 30
    memory_cap_gb: float | None = None  # address-space cap of each memory process


def _problems(*, heat: tuple[int, float], chromatin: tuple[int, float, float],
              langevin: tuple[int, float] | None = None, lr: float = 2e-3
              ) -> tuple[ProblemSpec, ...]:
    """Part 1's problems of a preset: ``(grid, budget_s)`` each (the chromatin problem also
    its pixel size in µm), the budget the same for both arms. The Langevin and chromatin
    problems are trained at ``lr`` (the chromatin one with residual weight 100), the heat
    problem at the default step."""
    specs = []
    if langevin is not None:
        n, budget = langevin
        specs.append(ProblemSpec("langevin", n, residual_weight=10.0, lr=lr,
                                 budget_s={"autograd": budget, "mollifier": budget}))
    n, budget = heat
    specs.append(ProblemSpec("heat", n, budget_s={"autograd": budget, "mollifier": budget}))
    n, pixel_um, budget = chromatin
    specs.append(ProblemSpec("chromatin", n, {"pixel_size_um": pixel_um}, residual_weight=100.0,
                             lr=lr, budget_s={"autograd": budget, "mollifier": budget}))
    return tuple(specs)


def config_for(mode: Mode) -> BenchConfig:
    """The preset for ``mode``: ``"smoke"`` (tests, < 60 s), ``"quick"`` (< 5 min),
    ``"full"`` (the documented run, about 15-20 min on two shared CPU cores) or ``"peer"``
    (the DeepXDE comparison of docs/benchmarks.md: heat and 4th order with short budgets, and
    time and memory per step at 128x128; about 6 min).

    >>> config_for("quick").mode
    'quick'
    """
    if mode == "full":
        return BenchConfig(
            mode="full",
            problems=_problems(langevin=(2048, 60.0), heat=(64, 75.0),
                               chromatin=(64, 0.04, 120.0)),
        )
    if mode == "quick":
        return BenchConfig(
            mode="quick",
            problems=_problems(langevin=(512, 8.0), heat=(48, 12.0),
                               chromatin=(48, 0.0533, 20.0)),
            max_iters=300, warmup=50, problem_memory=False, scaling_sizes=(32, 64),
            autograd_max_size=64, order_size=32, timing_blocks=2, mollifier_steps_per_block=3,
            memory_steps=1,
        )
    if mode == "peer":
        return BenchConfig(
            mode="peer",
            problems=_problems(heat=(32, 20.0), chromatin=(48, 0.0533, 30.0)),
            noise_levels=(0.05,), max_iters=600, warmup=50, problem_memory=False,
            scaling_sizes=(64, 128), orders=(), timing_blocks=2, mollifier_steps_per_block=3,
            memory_steps=1, deepxde_in_process_max=64, memory_cap_gb=17.0,
        )
    if mode == "smoke":
        return BenchConfig(
            mode="smoke",
            problems=_problems(langevin=(128, 2.0), heat=(24, 2.0), chromatin=(24, 0.1, 4.0),
                               lr=ProblemSpec.lr),
            noise_levels=(0.05,), max_iters=20, warmup=5, eval_every=5, problem_memory=False,
            scaling_sizes=(24,), autograd_max_size=24, orders=(1, 4), order_size=16,
            order_memory=False,
            timing_blocks=2, mollifier_steps_per_block=2, memory_steps=1,
        )
    raise ValueError(f"unknown benchmark mode {mode!r}; use 'smoke', 'quick', 'full' or 'peer'")
