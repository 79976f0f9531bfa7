"""Automatic choice of the mollifier radius delta and the rate window s, without ground truth.

The trap (SCIENCE.md section 3): cross-validating the residual picks the widest window,
because the residual is dominated by derivative noise and barely sees the bias in lambda.
chromarate judges candidates on lambda itself, through a **noise split**: the fields are
recorrupted into two halves ``y1 = f + z`` and ``y2 = f - z`` with ``z`` drawn at the
estimated noise level (wavelet MAD), so that the halves carry independent noise (Gaussian
approximation) and any disagreement between their estimates is noise.

For each candidate ``(delta, s)`` on a grid (in pixels), ``l1`` and ``l2`` are the estimates from
the halves, and the **split reliability** ``rho = corr(l1, l2)`` (Spearman-Brown
``2 rho / (1 + rho)`` for the full data) is the fraction of the map's variance that is
reproducible rather than noise. Smoothing more always raises reliability and always adds bias,
so the rule is a discrepancy principle on lambda: **take the least smoothing
(``delta_px + s_px``) whose full-data reliability reaches** ``target_reliability`` (0.97).

Measured on the synthetic table (``docs/accuracy.md``): within 0.01 of the best fixed
bandwidth's correlation on most cases. A known weakness: reproducible bias (at sharp
two-channel domain edges) looks like signal to a split, so on low-noise two-channel images the
rule smooths less than the best fixed choice. Other criteria measured and rejected are listed
in ``docs/accuracy.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..mollifier import Backend
from ..physics.base import LinearResidualModel
from .closed_form import linear_terms, local_least_squares

__all__ = [
    "DEFAULT_DELTAS_PX",
    "DEFAULT_WINDOWS_PX",
    "estimate_noise",
    "BandwidthChoice",
    "select_bandwidth",
    "choose_bandwidths",
]

log = logging.getLogger(__name__)

DEFAULT_DELTAS_PX: tuple[float, ...] = (3, 4, 5, 7, 10, 14, 18)
DEFAULT_WINDOWS_PX: tuple[float, ...] = (2.5, 4, 5.5, 7.5, 10, 15, 22)


def estimate_noise(fields: np.ndarray) -> np.ndarray:
    """Per-channel noise standard deviation of ``(C, H, W)`` fields (wavelet MAD, scikit-image).

    A channel that is constant (the single-channel model's ``phi_w``) gets 0.
    """
    from skimage.restoration import estimate_sigma

    out = []
    for ch in np.asarray(fields, dtype=np.float64):
        out.append(0.0 if float(np.ptp(ch)) == 0.0 else float(estimate_sigma(ch)))
    return np.asarray(out)


@dataclass
class BandwidthChoice:
    """The selected bandwidths and the evidence behind them."""

    delta_um: float
    window_um: float
    reliability: float
    target_reliability: float
    noise_sigma: list[float]
    criterion: str
    table: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cov(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - a.mean()) * (b - b.mean())))


def select_bandwidth(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    *,
    deltas_px: Sequence[float] = DEFAULT_DELTAS_PX,
    windows_px: Sequence[float] = DEFAULT_WINDOWS_PX,
    noise_sigma: Sequence[float] | None = None,
    target_reliability: float = 0.97,
    seed: int = 0,
    backend: Backend = "spectral",
    lambda_min: float = 0.0,
    lambda_max: float = 20.0,
    progress: Callable[[dict], None] | None = None,
) -> BandwidthChoice:
    """Choose ``(delta, s)`` for :func:`~pipeline.estimate.closed_form.local_least_squares`.

    Parameters
    ----------
    fields
        ``(C, H, W)`` fields in the model's channel order (one plane; for big images pass a
        representative crop).
    model
        The residual model.
    pixel_size_um
        Grid spacing.
    deltas_px, windows_px
        Candidate grids in pixels (radius of the bump; sigma of the Gaussian window).
    noise_sigma
        Per-channel noise std; estimated with :func:`estimate_noise` when omitted.
    target_reliability
        Full-data split reliability the chosen map must reach.
    seed
        Seed of the recorruption noise.
    """
    f = np.asarray(fields, dtype=np.float64)
    sigma = estimate_noise(f) if noise_sigma is None else np.asarray(noise_sigma, dtype=np.float64)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=f.shape) * sigma[:, None, None]
    halves = np.stack([f + z, f - z])  # (2, C, H, W): one mollification pass for both

    cands: list[dict[str, Any]] = []
    weight = None
    for dpx in deltas_px:
        delta = float(dpx) * pixel_size_um
        try:
            terms = linear_terms(halves, model, delta, pixel_size_um, backend=backend)
        except ValueError as exc:  # delta too small for the grid
            log.debug("skipping delta=%s: %s", delta, exc)
            continue
        if weight is None or terms.weight.sum() < weight.sum():
            weight = terms.weight
        for spx in windows_px:
            lam, _ = local_least_squares(
                terms, float(spx) * pixel_size_um, pixel_size_um,
                lambda_min=lambda_min, lambda_max=lambda_max,
            )
            cands.append({"delta_px": float(dpx), "window_px": float(spx), "l1": lam[0], "l2": lam[1]})
            if progress is not None:
                progress({"stage": "bandwidth", "done": len(cands),
                          "total": len(deltas_px) * len(windows_px)})
    if not cands:
        raise ValueError("no bandwidth candidate fits this grid (image too small?)")

    # evaluate on pixels that every candidate covers with finite values
    ok = weight > 0
    for c in cands:
        ok &= np.isfinite(c["l1"]) & np.isfinite(c["l2"])
    if ok.sum() < 16:
        raise ValueError("too few interior pixels to choose a bandwidth (image too small?)")
    for c in cands:
        a, b = c["l1"][ok], c["l2"][ok]
        denom = np.sqrt(a.var() * b.var())
        rho = _cov(a, b) / denom if denom > 0 else 0.0
        c["reliability_half"] = float(rho)
        c["reliability"] = float(2 * rho / (1 + abs(rho))) if rho > -1 else -1.0
        c["amount"] = c["delta_px"] + c["window_px"]

    passing = [c for c in cands if c["reliability"] >= target_reliability]
    if passing:
        best = min(passing, key=lambda c: (c["amount"], c["delta_px"]))
        how = f"least smoothing with split reliability >= {target_reliability}"
    else:
        best = max(cands, key=lambda c: c["reliability"])
        how = f"no candidate reached reliability {target_reliability}: the most reliable one"
        log.warning("bandwidth: %s (%.3f); the rate map is noise-dominated", how,
                    best["reliability"])

    table = [
        {k: float(c[k]) for k in ("delta_px", "window_px", "reliability")}
        for c in cands
    ]
    choice = BandwidthChoice(
        delta_um=best["delta_px"] * pixel_size_um,
        window_um=best["window_px"] * pixel_size_um,
        reliability=float(best["reliability"]),
        target_reliability=float(target_reliability),
        noise_sigma=[float(s) for s in sigma],
        criterion=f"noise-split reliability of lambda (no ground truth): {how}",
        table=table,
    )
    log.info("bandwidth: delta=%.3f um, s=%.3f um (reliability %.3f)", choice.delta_um,
             choice.window_um, choice.reliability)
    return choice


def choose_bandwidths(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: Any,
    *,
    seed: int = 0,
    crop_px: int = 512,
    progress: Callable[[dict], None] | None = None,
) -> tuple[float, float, dict[str, Any]]:
    """``(delta_um, window_um, evidence)`` for one plane under ``EstimatorSettings``.

    Values fixed by the user are kept; ``"auto"`` ones are chosen by :func:`select_bandwidth`
    on a central crop of at most ``crop_px`` pixels a side (which bounds the cost on large
    images). The evidence dict is what ``run.json`` records.
    """
    delta, window = settings.delta_um, settings.window_um
    if delta != "auto" and window != "auto":
        return float(delta), float(window), {"criterion": "fixed by the user"}
    kwargs: dict[str, Any] = {}
    if delta != "auto":
        kwargs["deltas_px"] = (float(delta) / pixel_size_um,)
    if window != "auto":
        kwargs["windows_px"] = (float(window) / pixel_size_um,)
    h, w = fields.shape[-2:]
    y0, x0 = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
    crop = fields[..., y0 : y0 + crop_px, x0 : x0 + crop_px]
    choice = select_bandwidth(
        crop, model, pixel_size_um, seed=seed, backend=settings.backend,
        lambda_min=settings.lambda_min, lambda_max=settings.lambda_max,
        progress=progress, **kwargs,
    )
    evidence = choice.to_dict() | {"crop_px": list(crop.shape[-2:])}
    return choice.delta_um, choice.window_um, evidence
