"""Accuracy against ground truth: the one definition the tests, the accuracy tables and the
benchmarks share (λ maps: :func:`interior_r`; nucleus labels: :func:`match_labels`)."""

from __future__ import annotations

import numpy as np

__all__ = ["interior_r", "match_labels"]


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


def match_labels(pred: np.ndarray, ref: np.ndarray, iou: float = 0.5) -> dict[str, float]:
    """Object matching of two label images: pairs with IoU ≥ ``iou`` are true positives.

    With ``iou`` ≥ 0.5 a reference object can match at most one predicted object.
    Returns ``tp``, ``fp``, ``fn``, ``precision``, ``recall`` and ``f1``.

    >>> a = np.zeros((6, 6), int); a[:3, :3] = 1; a[4:, 4:] = 2
    >>> b = np.zeros((6, 6), int); b[:3, :2] = 7
    >>> match_labels(b, a)["f1"]
    0.6666666666666666
    """
    from skimage.metrics import contingency_table

    pred, ref = np.asarray(pred), np.asarray(ref)
    table = contingency_table(ref, pred).toarray()  # ref x pred pixel counts
    inter = table[1:, 1:].astype(float)
    union = table[1:, :].sum(1)[:, None] + table[:, 1:].sum(0)[None, :] - inter
    ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    n_ref = int(np.count_nonzero(np.bincount(ref.ravel())[1:]))
    n_pred = int(np.count_nonzero(np.bincount(pred.ravel())[1:]))
    tp = int((ious >= iou).any(axis=1).sum()) if ious.size else 0
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_ref if n_ref else 0.0
    f1 = 2 * tp / (n_pred + n_ref) if n_pred + n_ref else 1.0
    return {"tp": tp, "fp": n_pred - tp, "fn": n_ref - tp, "precision": prec, "recall": rec,
            "f1": f1}
