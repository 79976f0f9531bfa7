"""Rate estimators: closed-form mollified local least squares with automatic bandwidths."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import EstimatorSettings
from ..physics.base import LinearResidualModel
from .bandwidth import BandwidthChoice, choose_bandwidths, estimate_noise, select_bandwidth
from .closed_form import (
    ClosedFormResult,
    identifiable_mask,
    linear_terms,
    local_least_squares,
)
from .neural import calibration_fraction, fit_image, fit_tiles

__all__ = [
    "BandwidthChoice",
    "choose_bandwidths",
    "ClosedFormResult",
    "estimate_closed_form",
    "estimate_noise",
    "calibration_fraction",
    "fit_image",
    "fit_tiles",
    "identifiable_mask",
    "linear_terms",
    "local_least_squares",
    "select_bandwidth",
]


def estimate_closed_form(
    fields: np.ndarray,
    model: LinearResidualModel,
    pixel_size_um: float,
    settings: EstimatorSettings | None = None,
    *,
    seed: int = 0,
    selection_crop_px: int = 512,
    progress: Callable[[dict], None] | None = None,
) -> ClosedFormResult:
    """Estimate ``lam`` on one plane of ``(C, H, W)`` fields by mollified local least squares.

    Bandwidths set to ``"auto"`` in ``settings`` are chosen by
    :func:`~pipeline.estimate.bandwidth.select_bandwidth`; the choice and its evidence are in
    ``result.selection``; they are chosen on a central crop of at most ``selection_crop_px``
    pixels a side, which bounds their cost on large images. Unidentifiable pixels are NaN in
    ``result.lam``.

    Examples
    --------
    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((48, 48), 0.35), np.full((48, 48), 0.3)])
    >>> s = EstimatorSettings(delta_um=0.1, window_um=0.1)
    >>> r = estimate_closed_form(f, ChromatinModel(), 0.02, s)
    >>> round(float(np.nanmedian(r.lam)), 6)
    1.0
    """
    settings = settings or EstimatorSettings()
    delta, window, selection = choose_bandwidths(
        fields, model, pixel_size_um, settings, seed=seed, crop_px=selection_crop_px,
        progress=progress,
    )
    terms = linear_terms(fields, model, float(delta), pixel_size_um, backend=settings.backend)
    lam, den = local_least_squares(
        terms, float(window), pixel_size_um,
        lambda_min=settings.lambda_min, lambda_max=settings.lambda_max,
    )
    ident = identifiable_mask(terms, den, fraction=settings.identifiable_fraction)
    ident &= np.isfinite(lam)
    lam = np.where(ident, lam, np.nan)
    return ClosedFormResult(
        lam=lam.astype(np.float32),
        identifiable=ident,
        delta_um=float(delta),
        window_um=float(window),
        selection=selection,
    )
