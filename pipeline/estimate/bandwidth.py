"""Automatic choice of the mollifier radius delta and the rate window s, without ground truth.

The trap (SCIENCE.md section 3): cross-validating the residual picks the widest window,
because the residual is dominated by derivative noise and barely sees the bias in lambda.
chromarate judges candidates on lambda itself, through a **noise split**: the fields are
recorrupted into two halves ``y1 = f + z`` and ``y2 = f - z`` with ``z`` drawn at the
estimated noise level (wavelet MAD), so that the halves carry independent noise (Gaussian
approximation) and any disagreement between their estimates is noise.

For each candidate ``b = (delta, s)`` on a grid (in pixels), ``l1`` and ``l2`` are the estimates
from the halves. Because their noise is independent, cross-half covariances see only the
noise-free expectations ``m_b``:

- the **split reliability** ``rho_b = corr(l1_b, l2_b)`` (Spearman-Brown ``2 rho / (1 + rho)`` for
  the full data) is ``var(m_b) / var(lam_b)``, the fraction of the map that is not noise;
- the **signal agreement** ``cov_x(b, ref) / sqrt(cov_x(b, b) cov_x(ref, ref))``, with
  ``cov_x(b, c) = (cov(l1_b, l2_c) + cov(l1_c, l2_b)) / 2``, is ``corr(m_b, m_ref)``.

The correlation of an estimate with the truth factorises exactly as
``corr(lam_b, truth) = corr(m_b, truth) * sqrt(rho_b)``. The rule replaces the unknown truth by a
**reference** ``m_ref``: the least-smoothed map that is still mostly signal (the smallest window
``s`` whose reliability reaches ``reference_reliability`` = 0.8, at the largest delta that does),
and **takes the candidate with the largest predicted correlation**
``corr(m_b, m_ref) * sqrt(rho_b)``. Smoothing raises the second factor and, once it blurs the
signal, lowers the first, so the rule balances noise against bias instead of capping one.

Measured on the synthetic table (``docs/accuracy.md``, a held-out seed): within 0.01 of the best
fixed bandwidth of the same grid on most cases. Earlier rules (a reliability threshold, cross-split
MSE against a reference, ...) are listed with their numbers in ``docs/accuracy.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import TooSmallError
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
    "central_crop",
    "SELECTION_CROP_PX",
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
    reference_reliability: float
    reference: dict[str, float]
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
    reference_reliability: float = 0.8,
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
    reference_reliability
        Full-data split reliability the reference map must reach (see the module text).
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
        raise TooSmallError("no bandwidth candidate fits this grid (image too small?)")

    # evaluate on pixels that every candidate covers with finite values
    ok = weight > 0
    for c in cands:
        ok &= np.isfinite(c["l1"]) & np.isfinite(c["l2"])
    if ok.sum() < 16:
        raise TooSmallError("too few interior pixels to choose a bandwidth (image too small?)")
    for c in cands:
        a, b = c["l1"][ok], c["l2"][ok]
        c["a"], c["b"] = a - a.mean(), b - b.mean()
        denom = np.sqrt(a.var() * b.var())
        rho = _cov(a, b) / denom if denom > 0 else 0.0
        c["reliability_half"] = float(rho)
        c["reliability"] = float(2 * rho / (1 + abs(rho))) if rho > -1 else -1.0
        c["signal_var"] = float(np.mean(c["a"] * c["b"]))  # cov_x(b, b): var of m_b

    refs = [c for c in cands if c["reliability"] >= reference_reliability]
    if refs:
        ref = min(refs, key=lambda c: (c["window_px"], -c["delta_px"]))
        for c in cands:
            cross = 0.5 * (np.mean(c["a"] * ref["b"]) + np.mean(ref["a"] * c["b"]))
            ok_c = c["signal_var"] > 0 and c["reliability"] > 0
            agree = cross / np.sqrt(c["signal_var"] * ref["signal_var"]) if ok_c else -np.inf
            c["agreement"] = float(agree)
            c["predicted_r"] = float(agree * np.sqrt(c["reliability"])) if ok_c else -np.inf
        best = max(cands, key=lambda c: c["predicted_r"])
        how = ("largest predicted correlation with the truth, corr(m, m_ref) x sqrt(split "
               f"reliability), against the reference delta={ref['delta_px']:g} px, "
               f"s={ref['window_px']:g} px (least window with reliability >= "
               f"{reference_reliability})")
        reference = {"delta_px": ref["delta_px"], "window_px": ref["window_px"],
                     "reliability": ref["reliability"]}
    else:
        best = max(cands, key=lambda c: c["reliability"])
        how = (f"no candidate reached reliability {reference_reliability}: the most reliable "
               "one")
        reference = {}
        log.warning("bandwidth: %s (%.3f); the rate map is noise-dominated", how,
                    best["reliability"])

    table = [
        {k: (float(c[k]) if np.isfinite(c[k]) else None)
         for k in ("delta_px", "window_px", "reliability", "predicted_r") if k in c}
        for c in cands
    ]
    choice = BandwidthChoice(
        delta_um=best["delta_px"] * pixel_size_um,
        window_um=best["window_px"] * pixel_size_um,
        reliability=float(best["reliability"]),
        reference_reliability=float(reference_reliability),
        reference=reference,
        noise_sigma=[float(s) for s in sigma],
        criterion=f"noise-split reliability of lambda (no ground truth): {how}",
        table=table,
    )
    log.info("bandwidth: delta=%.3f um, s=%.3f um (reliability %.3f)", choice.delta_um,
             choice.window_um, choice.reliability)
    return choice


SELECTION_CROP_PX = 512
"""Side of the central crop that bandwidths are chosen on (bounds the cost on large images)."""


def central_crop(fields: np.ndarray, crop_px: int = SELECTION_CROP_PX) -> np.ndarray:
    """The central ``crop_px`` x ``crop_px`` part of ``(..., H, W)`` (all of it if smaller).

    Idempotent, so a caller may crop early to free the rest of a large plane:

    >>> a = np.arange(100.0).reshape(10, 10)
    >>> central_crop(a, 4).shape, np.array_equal(central_crop(central_crop(a, 4), 4), central_crop(a, 4))
    ((4, 4), True)
    """
    h, w = fields.shape[-2:]
    y0, x0 = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
    return fields[..., y0 : y0 + crop_px, x0 : x0 + crop_px]


def choose_bandwidths(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: Any,
    *,
    seed: int = 0,
    crop_px: int = SELECTION_CROP_PX,
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
    crop = central_crop(fields, crop_px)
    choice = select_bandwidth(
        crop, model, pixel_size_um, seed=seed, backend=settings.backend,
        lambda_min=settings.lambda_min, lambda_max=settings.lambda_max,
        progress=progress, **kwargs,
    )
    evidence = choice.to_dict() | {"crop_px": list(crop.shape[-2:])}
    return choice.delta_um, choice.window_um, evidence
