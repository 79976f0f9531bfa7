"""Automatic choice of the mollifier radius delta and the rate window s, without ground truth.

The trap (docs/science.md section 3): cross-validating the residual picks the widest window,
because the residual is dominated by derivative noise and barely sees the bias in lambda.
chromarate judges candidates on lambda itself, through a **noise split**: the fields are
recorrupted into two halves ``y1 = f + z`` and ``y2 = f - z``. When ``z`` has the same
covariance as the image noise ``n``, ``n + z`` and ``n - z`` are uncorrelated (independent for
Gaussian noise), so any disagreement between the halves' estimates is noise. ``z`` is drawn
from a per-channel :class:`~pipeline.estimate.noise.NoiseModel` fitted to the noise power
spectrum, which includes the noise's **spatial correlation** (white for a camera; correlated
over about the localisation precision for a rendered STORM/PALM image). White ``z`` at a
finest-scale noise level, as before, leaves the halves' noise correlated on such images and
makes every candidate look reliable: the smallest window won.

For each candidate ``b = (delta, s)``, ``l1`` and ``l2`` are the estimates from the halves.
Cross-half covariances see only the noise-free expectations ``m_b``:

- the **split reliability** ``rho_b = corr(l1_b, l2_b)`` (Spearman-Brown ``2 rho / (1 + rho)`` for
  the full data) is ``var(m_b) / var(lam_b)``, the fraction of the map that is not noise;
- the **signal agreement** ``cov_x(b, ref) / sqrt(cov_x(b, b) cov_x(ref, ref))``, with
  ``cov_x(b, c) = (cov(l1_b, l2_c) + cov(l1_c, l2_b)) / 2``, is ``corr(m_b, m_ref)``.

The full data's estimate is ``lam_b = m_b + e_b``; ``(l1_b - l2_b) / 2`` is an estimate of the
noise ``e_b`` alone, so ``noise_b = mean((l1_b - l2_b)^2) / 4`` is its variance. Those are
centred: λ is a nonlinear function of the data, and noise also shifts its **level**. The halves
carry twice the data's noise variance, so to second order ``level_b = mean((l1_b + l2_b) / 2 -
lam_b)`` (``lam_b`` the data's own map, computed in the same pass) is the data's level shift
from its noise-free map. The rule replaces
the unknown truth by a **reference** ``m_ref`` (the least window whose reliability reaches
``reference_reliability`` = :data:`REFERENCE_RELIABILITY`, at the largest delta that does:
the least-smoothed map that is at least half signal) and **takes the candidate with the
smallest predicted squared error** against it,

    |m_b - m_ref|^2 + noise_b + level_b^2
        = cov_x(b, b) - 2 cov_x(b, ref) + cov_x(ref, ref) + noise_b + level_b^2,

whose centred terms the cross-half products estimate without noise bias. The reference's
noise never enters: only its signal does. Each candidate's predicted correlation with the
truth, ``corr(m_b, m_ref) * sqrt(rho_b)`` (``corr(lam_b, truth) = corr(m_b, truth) *
sqrt(rho_b)``, the agreement capped at 1), is kept as evidence; it chose the bandwidth until
issue 12, and leaned to wide windows where the reference is smooth (two-channel STORM). A
candidate whose halves sit at a bound of lambda on more than
:data:`~pipeline.estimate.bandwidth_split.MAX_AT_BOUND` of the pixels is not judged: its
correlations are those of the bounds.

**Where it is evaluated.** With a ``foreground`` mask (the nuclei), the noise is fitted on it
and the statistics are computed only on foreground pixels farther from its edge than the
largest derivative support (plus ``EDGE_WINDOWS`` largest windows; 0, measured better than 1
on the tuning seeds): the dark background and the nuclear-edge band, where the derivatives see
the edge rather than chromatin, stay out of the choice. With ``foreground_weight`` the
candidates are the estimator whose least-squares weight is zero outside the eroded
foreground, which is far better inside nuclei (``docs/bandwidth.md``) when the fit does the
same.

**Candidates.** The grid is defined in micrometres (``DEFAULT_DELTAS_UM``,
``DEFAULT_WINDOWS_UM``) and converted to pixels; when its smallest delta would span fewer than
``MIN_DELTA_PX`` (windows: ``MIN_WINDOW_PX``) the whole grid is scaled up to it. When the
choice sits at the grid's edge, the grid is extended by up to ``EXTEND_STEPS`` steps in that
direction (a delta only while its blanked border band stays under ``MAX_BORDER_FRACTION`` of
the field) and the choice is made again; a choice still at the edge is flagged
(``at_grid_edge``) and logged as a warning.

How the rule and its constants were chosen, with numbers: ``docs/bandwidth.md`` and
``docs/accuracy.md``. This module holds the driver (:func:`select_bandwidth`,
:func:`choose_bandwidths`); the candidate grid and its extension are in
:mod:`pipeline.estimate.bandwidth_grid`, the noise models, the halves' maps and the statistics
in :mod:`pipeline.estimate.bandwidth_split`.
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
from .bandwidth_grid import (
    DEFAULT_DELTAS_PX,
    DEFAULT_DELTAS_UM,
    DEFAULT_WINDOWS_PX,
    DEFAULT_WINDOWS_UM,
    EXTEND_STEPS,  # noqa: F401  (re-exported: the grid lives in bandwidth_grid)
    MAX_BORDER_FRACTION,
    MIN_DELTA_PX,
    MIN_WINDOW_PX,
    _edge,
    _extend,
    border_fraction,
    candidate_grid,
)
from .bandwidth_split import (
    EDGE_WINDOWS,  # noqa: F401  (re-exported: the statistics live in bandwidth_split)
    _choose,
    _evaluation_mask,
    _halves,
    _Maps,
    _statistics,
    estimate_noise,
    noise_models,
)
from .noise import NoiseModel

__all__ = [
    "DEFAULT_DELTAS_PX",
    "DEFAULT_WINDOWS_PX",
    "DEFAULT_DELTAS_UM",
    "DEFAULT_WINDOWS_UM",
    "estimate_noise",
    "noise_models",
    "candidate_grid",
    "BandwidthChoice",
    "select_bandwidth",
    "choose_bandwidths",
    "central_crop",
    "SELECTION_CROP_PX",
]

log = logging.getLogger(__name__)

REFERENCE_RELIABILITY = 0.5
"""Split reliability the reference map must reach: the least-smoothed map that is at least half
signal (0 to 0.5 came within 0.02 of the best fixed bandwidth on 235-236 of 276 stress tuning
cases, 0.6 on 233, 0.7 on 229: a smoother reference leans to wide windows again;
``docs/bandwidth.md``)."""


@dataclass
class BandwidthChoice:
    """The selected bandwidths and the evidence behind them.

    ``noise`` holds each channel's noise model (pixel std ``sigma``, ``corr_length_px``, ...);
    ``at_grid_edge`` says whether the choice sits at an edge of the (extended) candidate grid,
    with ``grid_message`` saying which and what was done; ``evaluated_px`` is the number of
    pixels the statistics were computed on; ``noise_dominated`` that no candidate's map was
    at least half signal (no reference reached ``reference_reliability``, or every candidate
    sat at a bound of lambda): the rate map is mostly noise at any bandwidth.
    """

    delta_um: float
    window_um: float
    reliability: float
    reference_reliability: float
    reference: dict[str, float]
    noise_sigma: list[float]
    criterion: str
    table: list[dict[str, float]] = field(default_factory=list)
    noise: list[dict[str, Any]] = field(default_factory=list)
    at_grid_edge: bool = False
    grid_message: str = ""
    deltas_px: list[float] = field(default_factory=list)
    windows_px: list[float] = field(default_factory=list)
    evaluated_px: int = 0
    foreground: str = "not given: all pixels"
    noise_dominated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_bandwidth(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    *,
    deltas_px: Sequence[float] | None = None,
    windows_px: Sequence[float] | None = None,
    noise_sigma: Sequence[float] | None = None,
    reference_reliability: float = REFERENCE_RELIABILITY,
    seed: int = 0,
    backend: Backend = "spectral",
    lambda_min: float = 0.0,
    lambda_max: float = 20.0,
    progress: Callable[[dict], None] | None = None,
    foreground: np.ndarray | None = None,
    field_shape: Sequence[int] | None = None,
    extend: bool = True,
    foreground_weight: bool = False,
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
        Candidate grids in pixels (radius of the bump; sigma of the Gaussian window); default
        :func:`candidate_grid`. A grid of one value is kept fixed (never extended).
    noise_sigma
        Per-channel noise std, taken as white noise; fitted per channel
        (:func:`~pipeline.estimate.noise.estimate_noise_model`, spatial correlation included)
        when omitted.
    reference_reliability
        Full-data split reliability the reference map must reach (see the module text).
    seed
        Seed of the recorruption noise.
    foreground
        Optional boolean ``(H, W)`` mask of the nuclei: the noise is fitted and the split
        statistics are computed only inside it, away from its edge (see the module text).
    field_shape
        ``(H, W)`` of the whole plane, when ``fields`` is a crop of it: bounds how far the
        delta grid is extended (``MAX_BORDER_FRACTION``).
    extend
        Extend the grid when the choice sits at its edge.
    foreground_weight
        Judge the estimator whose least-squares weight is zero outside the foreground eroded
        by the derivative support (terms that see the nuclear edge or the background left
        out). Set it when the fit does the same; by default the candidates are the plain
        estimator's.
    """
    f = np.asarray(fields, dtype=np.float64)
    shape = tuple(field_shape or f.shape[-2:])
    fg = None
    if foreground is not None:
        fg = np.asarray(foreground, dtype=bool)
        if fg.shape != f.shape[-2:]:
            raise ValueError(f"foreground mask of shape {fg.shape} does not match the fields' "
                             f"plane {f.shape[-2:]}")
        if not fg.any():
            raise ValueError("the foreground mask is empty: no nucleus to choose bandwidths on")
    if noise_sigma is not None:
        models = [NoiseModel.white(s) for s in np.asarray(noise_sigma, dtype=np.float64)]
    else:
        models = noise_models(f, fg)
    grid_d, grid_s = candidate_grid(pixel_size_um)
    deltas = sorted(float(v) for v in (grid_d if deltas_px is None else deltas_px))
    windows = sorted(float(v) for v in (grid_s if windows_px is None else windows_px))
    maps = _Maps(_halves(f, models, seed), model, pixel_size_um, backend, lambda_min,
                 lambda_max, progress, len(deltas) * len(windows))
    maps.fg_weight = fg if foreground_weight else None

    def run() -> tuple[list[dict], dict, str, dict, np.ndarray, str]:
        cands = []
        for d in deltas:
            cands += [c for s in windows if (c := maps.get(d, s)) is not None]
            maps.release(d)
        if not cands:
            raise TooSmallError("no bandwidth candidate fits this grid (image too small?)")
        ok, where = _evaluation_mask(cands, fg)
        if ok.sum() < 16:
            raise TooSmallError("too few interior pixels to choose a bandwidth (image too small?)")
        _statistics(cands, ok, (lambda_min, lambda_max))
        chosen = _choose(cands, reference_reliability)
        for c in cands:  # the centred maps the rule read: not kept while the grid grows
            c.pop("a", None)
            c.pop("b", None)
        return cands, *chosen, ok, where

    cands, best, how, reference, ok, where = run()
    notes: list[str] = []
    if extend:
        new_d, new_s = [], []
        if len(deltas) > 1 and best["delta_px"] in (deltas[0], deltas[-1]):
            top = best["delta_px"] == deltas[-1]
            new_d = [d for d in _extend(deltas, top, MIN_DELTA_PX)
                     if border_fraction(d, shape) <= MAX_BORDER_FRACTION]
        if len(windows) > 1 and best["window_px"] in (windows[0], windows[-1]):
            new_s = _extend(windows, best["window_px"] == windows[-1], MIN_WINDOW_PX)
        if new_d or new_s:
            notes.append(f"extended the grid by delta {new_d} px, s {new_s} px")
            deltas, windows = sorted(deltas + new_d), sorted(windows + new_s)
            cands, best, how, reference, ok, where = run()
    edges = [e for e in (_edge("delta", best["delta_px"], deltas),
                         _edge("s", best["window_px"], windows)) if e]
    frac = border_fraction(best["delta_px"], shape)
    if frac > MAX_BORDER_FRACTION:
        notes.append(f"the border band of delta={best['delta_px']:g} px blanks {frac:.0%} of "
                     "the field")
    message = "; ".join(notes + edges)
    if edges or frac > MAX_BORDER_FRACTION:
        log.warning("bandwidth: %s", message)

    table = [
        {k: (float(c[k]) if np.isfinite(c[k]) else None)
         for k in ("delta_px", "window_px", "reliability", "predicted_r", "predicted_mse",
                   "level_bias", "at_bound")
         if k in c}
        for c in cands
    ]
    choice = BandwidthChoice(
        delta_um=best["delta_px"] * pixel_size_um,
        window_um=best["window_px"] * pixel_size_um,
        reliability=float(best["reliability"]),
        reference_reliability=float(reference_reliability),
        reference=reference,
        noise_sigma=[m.sigma for m in models],
        criterion=f"noise-split reliability of lambda (no ground truth): {how}",
        table=table,
        noise=[m.to_dict() for m in models],
        at_grid_edge=bool(edges),
        grid_message=message,
        deltas_px=deltas,
        windows_px=windows,
        evaluated_px=int(ok.sum()),
        foreground=where,
        noise_dominated=bool(reference.get("noise_dominated", True)),
    )
    log.info("bandwidth: delta=%.3f um, s=%.3f um (reliability %.3f; noise %s)",
             choice.delta_um, choice.window_um, choice.reliability,
             ", ".join(f"sigma {m.sigma:.3g}, corr {m.corr_length_px:.2f} px" for m in models))
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
    foreground: np.ndarray | None = None,
    foreground_weight: bool = False,
) -> tuple[float, float, dict[str, Any]]:
    """``(delta_um, window_um, evidence)`` for one plane under ``EstimatorSettings``.

    Values fixed by the user are kept; ``"auto"`` ones are chosen by :func:`select_bandwidth`
    on a central crop of at most ``crop_px`` pixels a side (which bounds the cost on large
    images). ``foreground`` (boolean, the plane's shape: the nuclei) restricts the noise fit
    and the split statistics to the nuclei away from their edges (``foreground_weight``: see
    :func:`select_bandwidth`). The evidence dict is what
    ``run.json`` records (``at_grid_edge`` and ``grid_message`` say when the choice sits at
    the candidate grid's edge).
    """
    delta, window = settings.delta_um, settings.window_um
    if delta != "auto" and window != "auto":
        return float(delta), float(window), {"criterion": "fixed by the user"}
    kwargs: dict[str, Any] = {}
    if delta != "auto":
        kwargs["deltas_px"] = (float(delta) / pixel_size_um,)
    if window != "auto":
        kwargs["windows_px"] = (float(window) / pixel_size_um,)
    crop = np.asarray(central_crop(fields, crop_px), dtype=np.float64)  # float32 planes too
    if foreground is not None:
        if np.shape(foreground) != fields.shape[-2:]:
            raise ValueError(f"foreground mask of shape {np.shape(foreground)} does not match "
                             f"the plane {fields.shape[-2:]}")
        foreground = central_crop(np.asarray(foreground, dtype=bool), crop_px)
        if not foreground.any():
            log.warning("bandwidth: no nucleus in the central crop; choosing on all of it")
            foreground = None
    choice = select_bandwidth(
        crop, model, pixel_size_um, seed=seed, backend=settings.backend,
        lambda_min=settings.lambda_min, lambda_max=settings.lambda_max,
        progress=progress, foreground=foreground, field_shape=fields.shape[-2:],
        foreground_weight=foreground_weight, **kwargs,
    )
    evidence = choice.to_dict() | {"crop_px": list(crop.shape[-2:])}
    return choice.delta_um, choice.window_um, evidence
