"""Tables of the benchmark report: formatting, the per-problem and scaling tables, targets.

Pure formatting of the results of :func:`benchmarks.paper.run_benchmarks`.
"""

from __future__ import annotations

from typing import Any

#: The paper's fourth-order case as reported in the press.
PAPER = {
    "autograd": {"memory": "2.70 GB", "time": "> 3,300 s", "r": "0.44"},
    "mollifier": {"memory": "0.21 GB", "time": "< 340 s", "r": "0.99"},
    "across": "6-10x lighter and faster across benchmarks",
}

COLORS = {"autograd": "tab:red", "deepxde": "tab:green", "mollifier": "tab:blue"}
LABELS = {"autograd": "autograd", "deepxde": "DeepXDE", "mollifier": "mollifier"}
RATIO_KEYS = {"autograd": ("s_per_iter", "memory"),
              "deepxde": ("deepxde_s_per_iter", "deepxde_memory")}


def _mb(b: Any) -> str:
    return "n/a" if b is None else f"{b / 1e6:,.0f} MB" if b < 1e9 else f"{b / 1e9:.2f} GB"


def _s(x: Any) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _x(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def _r(x: Any) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def _setup_table(results: dict[str, Any]) -> list[str]:
    lines = ["| problem | grid | spacing | mollifier δ | noise σ (relative → absolute) | "
             "residual weight | learning rate | time budget per arm |", "|---|---|---|---|---|---|---|---|"]
    for p in results["problems"]:
        h = p["pixel_size"]
        lines.append(
            f"| {p['problem']} | {'x'.join(map(str, p['grid']))} | {h:.4g} | "
            f"{p['delta']:.4g} ({p['delta'] / h:.0f} px) | {p['noise']:g} → "
            f"{p['noise_sigma']:.3g} | {p['settings']['residual_weight']:g} | "
            f"{p['settings']['lr']:g} | {max(p['budget_s'].values()):.0f} s |")
    return lines


def _problem_table(results: dict[str, Any]) -> list[str]:
    """Every arm of every problem; the ratios (the mollifier arm faster / lighter by) are on
    the rows of the arms it is compared with."""
    lines = [
        "| problem | grid | noise | arm | time/step | mollifier faster by | peak memory | "
        "mollifier lighter by | steps | training time | r | r ≥ target after | "
        "mollifier r at autograd's steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in results["problems"]:
        grid = "x".join(map(str, p["grid"]))
        for arm, run in p["arms"].items():
            mem = run.get("memory", {}).get("peak_bytes")
            speed_key, mem_key = RATIO_KEYS.get(arm, (None, None))
            target = ("not reached" if run["time_to_target_s"] is None else
                      f"{run['time_to_target_s']:.1f} s ({run['iters_to_target']} steps)")
            lines.append(
                f"| {p['problem']} (order {p['order']}) | {grid} | {p['noise']:g} | "
                f"{LABELS.get(arm, arm)} | {_s(run['s_per_iter'])} | "
                f"{_x(p['ratios'].get(speed_key)) if speed_key else ''} | {_mb(mem)} | "
                f"{_x(p['ratios'].get(mem_key)) if mem_key else ''} | "
                f"{run['iterations']} ({run['stopped']}) | {run['train_s']:.0f} s | "
                f"{_r(run['r'])} | {target} | "
                f"{_r(p['mollifier_r_at_autograd_iterations']) if arm == 'autograd' else ''} |"
            )
        for arm, why in p.get("skipped_arms", {}).items():
            lines.append(f"| {p['problem']} (order {p['order']}) | {grid} | {p['noise']:g} | "
                         f"{LABELS.get(arm, arm)} | skipped: {why} | | | | | | | | |")
    return lines


def _cell(pair: dict[str, dict], arm: str, field: str, fmt) -> str:
    r = pair.get(arm, {})
    if "skipped" in r:
        return "out of memory" if "MemoryError" in r["skipped"] else "skipped"
    return fmt(r.get(field)) + (" †" if field == "s_per_iter" and r.get("timed") else "")


def _ratio_cell(pair: dict[str, dict], arm: str, field: str) -> str:
    a, m = pair.get(arm, {}).get(field), pair.get("mollifier", {}).get(field)
    return _x(a / m) if a and m else ""


def _scaling_table(rows: list[dict], key: str, title: str) -> list[str]:
    """Time per step and peak memory of every arm measured, and the mollifier arm's ratios."""
    arms = [a for a in COLORS if any(r["arm"] == a and "s_per_iter" in r for r in rows)]
    others = [a for a in arms if a != "mollifier"]
    head = ([f"{LABELS[a]} time/step" for a in arms]
            + [f"mollifier faster than {LABELS[a]}" for a in others]
            + [f"{LABELS[a]} memory" for a in arms]
            + [f"mollifier lighter than {LABELS[a]}" for a in others])
    lines = [f"| {title} | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for value in dict.fromkeys(r[key] for r in rows):
        pair = {r["arm"]: r for r in rows if r[key] == value}
        cells = ([_cell(pair, a, "s_per_iter", _s) for a in arms]
                 + [_ratio_cell(pair, a, "s_per_iter") for a in others]
                 + [_cell(pair, a, "peak_bytes", _mb) for a in arms]
                 + [_ratio_cell(pair, a, "peak_bytes") for a in others])
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return lines


def _span(values: list[float], fmt: str = "{:.1f}x") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if abs(hi - lo) < 0.05 * max(abs(lo), 1e-9) else (
        f"{fmt.format(lo)}-{fmt.format(hi)}")


TARGET_LABELS = {
    "speed_128": "time per step, 4th order at 128x128: autograd/mollifier ≥ 30x",
    "memory_128": "peak memory above baseline, 4th order at 128x128: ≥ 20x",
    "deepxde_speed_128": "time per step, 4th order at 128x128: DeepXDE/mollifier ≥ 30x",
    "deepxde_memory_128": "peak memory above baseline, 4th order at 128x128: DeepXDE/mollifier "
                          "≥ 30x",
    "mollifier_r_order4": "mollifier r ≥ 0.95 on the 4th-order problem (worst noise)",
}


def _target_rows(targets: dict[str, Any], keys=None) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for key, t in targets.items():
        if keys is not None and key not in keys:
            continue
        value = _r(t["value"]) if key.endswith("r_order4") else _x(t["value"])
        lines.append(f"| {TARGET_LABELS.get(key, key)} | {value} | {'yes' if t['met'] else 'no'} |")
    return lines
