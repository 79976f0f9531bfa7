"""Does λ's std hold on your own localisation data? The split-half check
(``chromarate split-half``).

The std of λ comes from a model of the image's noise, estimated from the image itself; on
data unlike the simulations it was tested on, that model can be wrong. A localisation table
allows a check that needs no model: its frames are split into two halves (alternating blocks
of ``block_frames`` frames, so that a molecule blinking over consecutive frames stays in one
half and bleaching or drift affects both alike), each half is rendered on the full table's
grid and fitted with the same bandwidths, calibration (each half holds half the
localisations: offset halved, scale doubled) and nuclei, and the two maps are compared.
Their difference is noise only (the same bandwidth gives both the same smoothing bias), so
it should fall within the 90 % interval of its own std,
``1.645 * sqrt(std_a² + std_b²)``, on about 90 % of the pixels, where each half's std is the
noise part of the product's std (its noise-resampled members' spread, without the bias
terms, which the difference does not contain).

- ``within_90`` near 0.90: the noise part of the std fits these data;
- well below (``z_rms`` above 1): the std is too narrow for this noise (the data are noisier
  than the noise model says, e.g. clustered localisations);
- well above: too wide.

It checks the noise part only: a bias (the bandwidth's smoothing, a calibration error) is
common to both halves and invisible to it. Each half is noisier than the full table, so the
check is of the noise model, not of the full image's std itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.localisations import LocalisationTable, render

__all__ = ["BLOCK_FRAMES", "Z90", "split_frames", "split_half_check"]

log = logging.getLogger(__name__)

BLOCK_FRAMES = 100
"""Frames per block of the split: a blink lasts a few frames, so few localisations of one
molecule fall on both sides of a block's edge."""
Z90 = 1.645
"""The 90 % two-sided quantile of a standard normal."""
EDGE_UM = 1.0
"""Pixels nearer than this to the image border are not compared (the border band)."""


def split_frames(table: LocalisationTable, block_frames: int = BLOCK_FRAMES
                 ) -> tuple[LocalisationTable, LocalisationTable]:
    """The localisations of even and of odd blocks of ``block_frames`` frames.

    >>> import pandas as pd
    >>> t = LocalisationTable("t", "x", pd.DataFrame({"x": [0.0] * 4, "y": [0.0] * 4,
    ...     "precision": [0.01] * 4, "channel": ["t"] * 4, "frame": [1, 2, 150, 250]}))
    >>> [list(h.data["frame"]) for h in split_frames(t, 100)]
    [[1, 2, 250], [150]]
    """
    if "frame" not in table.data or not np.isfinite(table.data["frame"]).all():
        raise ValueError(f"{table.name}: the table has no frame of every localisation; the "
                         "split-half check splits by frames")
    if block_frames < 1:
        raise ValueError(f"block_frames must be at least 1, got {block_frames}")
    block = (np.asarray(table.data["frame"], np.int64) // block_frames) % 2 == 0
    return (replace(table, data=table.data[block]), replace(table, data=table.data[~block]))


def split_half_check(tables: Sequence[LocalisationTable], pixel_size_um: float, settings: Any,
                     *, blur_um: float | None = None, block_frames: int = BLOCK_FRAMES
                     ) -> dict[str, Any]:
    """The split-half check of ``tables`` (one field) rendered at ``pixel_size_um``, fitted
    under ``settings`` (:class:`~pipeline.config.Settings`; the closed form whatever its
    ``method``). Returns a JSON-able record: the full fit's bandwidths and calibration, each
    half's localisations, and over the pixels identifiable in both halves (inside the nuclei,
    away from the border) ``within_90``, ``z_rms`` and ``z_median_abs`` of
    ``z = (λ_a - λ_b) / sqrt(std_a² + std_b²)``."""
    from pipeline.calibration import calibrate_plane
    from pipeline.config import Calibration
    from pipeline.estimate import fit_plane
    from pipeline.physics.chromatin import ChromatinModel
    from pipeline.segment import nuclei_foreground

    splits = [split_frames(t, block_frames) for t in tables]  # refused before any work
    image, names, rec = render(tables, pixel_size_um, blur_um=blur_um)
    roles, _, _, index = settings.channel_roles(len(names), names)
    image = image if index is None else image[list(index)]
    settings = settings.model_copy(update={"method": "closed-form"})
    fields, calib = calibrate_plane(image, roles, settings, pixel_size_um)
    fg = nuclei_foreground(fields, pixel_size_um, settings)
    model = ChromatinModel(settings.physics.phi_max, settings.physics.interface_length_um)
    full = fit_plane(fields, model, pixel_size_um, settings, foreground=fg,
                     channel_model=calib["model"])
    delta, window = full.bandwidth["delta_um"], full.bandwidth["window_um"]
    halves_cal = [Calibration(offset=0.5 * c["offset"], scale=2.0 * c["scale"])
                  for c in calib["channels"]]
    noise_only = settings.model_copy(update={
        "calibration": halves_cal, "calibration_check": "off",
        "estimator": settings.estimator.model_copy(update={"delta_um": delta,
                                                            "window_um": window}),
        "uncertainty": settings.uncertainty.model_copy(update={"bias_factor": 1.0,
                                                                "attenuation_bias": False,
                                                                "noise_bias": False})})
    fits, counts = [], []
    for h in (0, 1):
        half = [s[h] for s in splits]
        img, _, hrec = render(half, pixel_size_um, blur_um=rec["blur_nm"] * 1e-3,
                              grid=rec["grid"])
        img = img if index is None else img[list(index)]
        hf, _ = calibrate_plane(img, roles, noise_only, pixel_size_um)
        fits.append(fit_plane(hf, model, pixel_size_um, noise_only, foreground=fg,
                              channel_model=calib["model"]))
        counts.append([c["localisations"] for c in hrec["channels"]])
    a, b = fits
    edge = int(round(EDGE_UM / pixel_size_um))
    inner = np.zeros(a.mean.shape, bool)
    inner[edge:-edge or None, edge:-edge or None] = True
    ok = (inner & a.identifiable & b.identifiable & np.isfinite(a.mean) & np.isfinite(b.mean)
          & (a.std > 0) & (b.std > 0))
    z = (a.mean[ok] - b.mean[ok]) / np.sqrt(a.std[ok].astype(float) ** 2 + b.std[ok] ** 2)
    out = {"pixel_size_um": pixel_size_um, "blur_nm": rec["blur_nm"],
           "block_frames": block_frames, "channels": list(names),
           "roles": list(roles), "delta_um": delta, "window_um": window,
           "calibration": [{"offset": c["offset"], "scale": c["scale"]}
                           for c in calib["channels"]],
           "calibration_source": calib.get("source"),
           "localisations_halves": counts, "pixels": int(ok.sum())}
    if not ok.any():
        return out | {"within_90": None, "z_rms": None, "z_median_abs": None}
    return out | {"within_90": round(float(np.mean(np.abs(z) <= Z90)), 4),
                  "z_rms": round(float(np.sqrt(np.mean(z ** 2))), 4),
                  "z_median_abs": round(float(np.median(np.abs(z))), 4)}
