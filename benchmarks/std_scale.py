"""How far each case's std is from the one that would cover right (``uncertainty_components.py
scale``; docs/uncertainty.md, "How far one rule can go").

Reads a cache of ``benchmarks/uncertainty_components.py`` (either method's): per case, the
factors by which the product's std would have to be multiplied for the 90 % interval to hold
the truth on 80, 85, 90 and 95 % of the evaluation pixels; then their spread across cases and
the best single rescale of the std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.stress import Z90


def scale_factors(d) -> tuple[float, ...]:
    """Coverage of the product's std on one cached case and the factors ``c80``, ``c85``,
    ``c90``, ``c95`` that would make it cover 0.80 ... 0.95: the smallest ``c`` with
    ``|error| <= Z90 c std`` on that fraction of the pixels, a quantile of ``|error| / (Z90
    std)``."""
    ok = d["ok"] & np.isfinite(d["std_product"])
    err = np.abs(d["mean_product"] - d["truth"])[ok]
    std = d["std_product"][ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(err == 0, 0.0, err / (Z90 * std))
    factors = np.quantile(need, (0.80, 0.85, 0.90, 0.95), method="inverted_cdf")
    return (float(np.mean(need <= 1.0)), *(float(c) for c in factors))


def report_scale(paths: list[Path]) -> None:
    rows = [(pth.stem, *scale_factors(np.load(pth))) for pth in paths]
    print(f"{'case':36s} coverage   c85   c90   c95")
    for name, c, _, c85, c90, c95 in sorted(rows, key=lambda r: r[4]):
        print(f"{name:36s} {c:8.3f} {c85:5.2f} {c90:5.2f} {c95:5.2f}")
    names = np.array([r[0] for r in rows])
    c80, c85, c90, c95 = (np.array([r[i] for r in rows]) for i in (2, 3, 4, 5))
    print(f"in range {int(np.sum((c85 <= 1) & (c95 >= 1)))}/{len(rows)}; "
          f"band c95/c85 median {np.median(c95 / c85):.2f}")
    nocal = np.array(["_cal" not in n for n in names])
    grid = np.exp(np.linspace(-1.0, 1.0, 201))
    for label, sel in (("all cases", np.ones(len(rows), bool)),
                       ("without calibration errors", nocal)):
        lg = np.log(c90[sel])
        hits = [int(np.sum((c85[sel] <= g) & (c95[sel] >= g))) for g in grid]
        g = grid[int(np.argmax(hits))]
        print(f"{label}: c90 median {np.exp(np.median(lg)):.2f}, sd of log c90 {lg.std():.2f}, "
              f"10-90 % {np.exp(np.percentile(lg, 10)):.2f}-{np.exp(np.percentile(lg, 90)):.2f}; "
              f"best single rescale x{g:.2f}: {max(hits)}/{int(sel.sum())} in range, "
              f"{int(np.sum(c80[sel] > g))} below 0.80, {int(np.sum(c95[sel] < g))} above 0.95 "
              f"(as written: {int(np.sum(c80[sel] > 1))} below, {int(np.sum(c95[sel] < 1))} above)")
