"""Benchmarks of the paper's three inverse problems: autograd, the mollifier layer, DeepXDE.

:func:`run_benchmarks` is the entry point (the CLI's ``bench`` subcommand imports it when
asked, and ``benchmarks/paper_benchmarks.py`` calls it). The parts:

- :mod:`.problems`: the Langevin (order 1), heat (order 2) and chromatin (order 4) problems
  with a known truth;
- :mod:`.nets`: the field and rate networks every arm shares;
- :mod:`.arms`: the autograd and mollifier routes to the derivatives and the shared loss and
  optimiser; :func:`.arms.make_arm` builds any arm;
- :mod:`.deepxde_arm`: the same problem set up with DeepXDE (needs ``chromarate[bench]``);
- :mod:`.measure`: peak memory in a fresh process, alternating timing, training to a budget;
- :mod:`.suite`: the presets and the run;
- :mod:`.report`, :mod:`.tables`, :mod:`.plots`: ``benchmarks.md``, its tables and plots.
"""

from .arms import ARMS, ArmState, TrainSettings, pearson
from .measure import machine_info, measure_memory, time_alternating, train_alternating
from .problems import PROBLEMS, Problem, make_problem, probe_problem
from .report import write_report
from .suite import BenchConfig, ProblemSpec, config_for, run_benchmarks, summarize

__all__ = [
    "ARMS",
    "PROBLEMS",
    "ArmState",
    "BenchConfig",
    "Problem",
    "ProblemSpec",
    "TrainSettings",
    "config_for",
    "machine_info",
    "make_problem",
    "measure_memory",
    "pearson",
    "probe_problem",
    "run_benchmarks",
    "summarize",
    "time_alternating",
    "train_alternating",
    "write_report",
]
