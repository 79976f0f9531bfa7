"""Accuracy against synthetic ground truth: the one definition the tests, the accuracy tables
and the benchmarks share."""

from __future__ import annotations

import numpy as np

__all__ = ["interior_r"]


def interior_r(
    lam: np.ndarray, truth: np.ndarray, ok: np.ndarray | None = None, *, border_px: int = 16
) -> float:
    """Pearson r of ``lam`` with ``truth`` on finite pixels of ``ok`` at least ``border_px``
    from the border; NaN when fewer than 10 pixels remain or ``lam`` is constant there.

    >>> t = np.arange(64.0).reshape(8, 8)
    >>> interior_r(2 * t + 1, t, border_px=1)
    1.0
    """
    mask = np.isfinite(lam) if ok is None else (np.asarray(ok, bool) & np.isfinite(lam))
    if border_px > 0:
        mask[:border_px] = mask[-border_px:] = False
        mask[:, :border_px] = mask[:, -border_px:] = False
    if mask.sum() < 10 or np.nanstd(lam[mask]) == 0:
        return float("nan")
    return float(np.corrcoef(lam[mask], truth[mask])[0, 1])
