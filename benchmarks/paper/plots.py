"""Plots of the benchmark report (matplotlib, Agg backend): r against training time, and
time and memory per step against grid size or derivative order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tables import COLORS

__all__ = ["plot_scaling", "plot_training"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(results: dict[str, Any], path: Path) -> Path:
    """Pearson r against training time, one panel per problem, both arms, both noise levels."""
    plt = _plt()
    names = list(dict.fromkeys(p["problem"] for p in results["problems"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, name in zip(axes[0], names, strict=True):
        runs = [p for p in results["problems"] if p["problem"] == name]
        for i, p in enumerate(runs):
            for arm, run in p["arms"].items():
                hist = [row for row in run["history"] if row[1] > 0]
                ax.plot([h[1] for h in hist], [h[3] for h in hist], styles[i % 4],
                        color=COLORS[arm], label=f"{arm}, noise {p['noise']:g}")
        ax.axhline(results["config"]["target_r"], color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.2, 1.02)
        ax.set_xlabel("training time (s)")
        ax.set_title(f"{name} (order {runs[0]['order']}, grid {'x'.join(map(str, runs[0]['grid']))})")
    axes[0][0].set_ylabel("Pearson r of λ with the truth")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(rows: list[dict], key: str, path: Path, *, xlabel: str) -> Path:
    """Time per step and peak memory against ``key`` (grid size or order), both arms."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for arm, color in COLORS.items():
        pts = [r for r in rows if r["arm"] == arm and "s_per_iter" in r]
        xs = [r[key] for r in pts]
        a1.plot(xs, [r["s_per_iter"] for r in pts], "o-", color=color, label=arm)
        if not pts:
            continue
        mem = [(r[key], r["peak_bytes"] / 1e6) for r in pts if r.get("peak_bytes")]
        if mem:
            a2.plot(*zip(*mem, strict=True), "o-", color=color, label=arm)
    for ax, label in ((a1, "time per step (s)"), (a2, "peak memory above baseline (MB)")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        if key == "n":
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
