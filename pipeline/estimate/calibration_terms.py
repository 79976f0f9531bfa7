"""The std's calibration terms: how much λ would move under a calibration the noise cannot show.

Noise resampling sees nothing of the intensity calibration. :func:`pipeline.estimate.fit_plane`
adds, in quadrature, one term per source of calibration doubt, each the closed form at the
same bandwidths and weights on other fields:

- ``cal``: the fields under the calibration the image prefers, when its check contradicts the
  user's two-channel pairs and they are kept (:func:`pipeline.calibration.alternative_fields`);
- ``scale``: each channel's calibration scale ``1 + u`` times larger, for a relative scale
  uncertainty ``u`` the user states (``uncertainty.calibration_scale``;
  :func:`pipeline.physics.observation.rescaled_fields`).

A term is ``sqrt(sum_k (lam - lam_k)^2)`` over its alternatives ``k``, 0 where either is
undefined. ``run.json`` records each term's median over the identifiable pixels
(:data:`RECORD_KEYS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..physics.observation import rescaled_fields
from ..tiling import extract_tiles

__all__ = ["RECORD_KEYS", "calibration_sources", "calibration_term"]

RECORD_KEYS = {"cal": "std_calibration_term", "scale": "std_calibration_scale_term"}
"""Each term's name in the plane's record (its median over identifiable pixels, or None)."""

Source = Callable[[np.ndarray, Any, list], Iterator[np.ndarray]]


def calibration_sources(alternative: np.ndarray | None, channel_model: str | None,
                        scale_uncertainty: float) -> dict[str, Source]:
    """The calibration terms that apply, by name: each yields, for a batch of ``(N, C, H, W)``
    tiles (cut from the plane by ``plan`` and ``batch``), its alternative tile fields one at a
    time. ``alternative`` is the plane's fields under the image's preferred calibration; the
    scale term needs the observation model (``channel_model``) and ``scale_uncertainty`` > 0.

    >>> sorted(calibration_sources(None, "two-channel", 0.05)), calibration_sources(None, None, 0.05)
    (['scale'], {})
    """
    out: dict[str, Source] = {}
    if alternative is not None:
        def preferred(tiles: np.ndarray, plan: Any, batch: list) -> Iterator[np.ndarray]:
            yield extract_tiles(alternative, plan, tiles=batch).astype(np.float64)

        out["cal"] = preferred
    if scale_uncertainty and channel_model is not None:
        roles = (("heterochromatin",) if channel_model == "single-channel"
                 else ("heterochromatin", "chromatin"))

        def scaled(tiles: np.ndarray, plan: Any, batch: list) -> Iterator[np.ndarray]:
            for role in roles:
                yield rescaled_fields(tiles, channel_model, role, 1.0 + scale_uncertainty)

        out["scale"] = scaled
    return out


def calibration_term(lam: np.ndarray, alternatives: Iterator[np.ndarray],
                     closed_form: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``sqrt(sum_k (lam - closed_form(f_k))^2)`` over the alternative fields ``f_k``, each
    difference 0 where either map is undefined.

    >>> calibration_term(np.array([1.0, 2.0]), iter([np.array([4.0, np.nan])]), lambda f: f)
    array([3., 0.])
    """
    sq = np.zeros_like(lam)
    for fields in alternatives:
        sq += np.nan_to_num(lam - closed_form(fields)) ** 2
    return np.sqrt(sq)
