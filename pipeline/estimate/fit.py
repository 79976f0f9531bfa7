"""The one fit path: lambda, its std and its identifiability for one plane, for every method.

:func:`fit_plane` is what ``chromarate run``, the napari run widget and the benchmarks call:

1. choose the bandwidths ``(delta, s)`` once for the plane (:mod:`.bandwidth`) and the noise
   model the uncertainty resamples with;
2. cut the plane into tiles with a halo derived from the operator (:mod:`pipeline.tiling`) and
   stream them in batches: the closed-form estimate of every tile (:mod:`.closed_form`), then
   the method's mean and std (closed form: :func:`.uncertainty.closed_form_std`; neural:
   :func:`.neural.fit_tiles_guarded`: the networks, guarded against divergence); where the image contradicts the
   user's calibration (``alternative``), the std also holds the difference the calibration
   the image prefers makes to the closed form;
3. blend the tiles into plane maps with feathered weights, and decide identifiability on the
   blended closed-form terms with thresholds from the whole plane.

The result is a :class:`PlaneFit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation

from ..device import resolve_device
from ..errors import TooSmallError
from ..memory import RowFile, release_freed_memory
from ..mollifier import Mollifier
from ..tiling import (
    PlaneBlend,
    extract_tiles,
    feather,
    halo_px,
    plan_tiles,
    valid_cut,
    valid_slices,
)
from .bandwidth import central_crop, choose_bandwidths, noise_models
from .calibration_terms import RECORD_KEYS, calibration_sources, calibration_term
from .closed_form import linear_terms, local_least_squares, nuclei_weight
from .uncertainty import FieldNoise, closed_form_std

__all__ = ["BATCH_PX", "PlaneFit", "fit_plane", "noise_model"]

log = logging.getLogger(__name__)

BATCH_PX = 400_000
"""Window pixels per batch of tiles by default. The neural method's training graphs hold
much more per pixel than the closed form (about 350 MB per 374² window with its 5 problems,
measured on the CPU), so there it batches ``ensemble_size + 1`` times fewer pixels; on a GPU
the graphs live in the device's memory, not the host's."""


@dataclass
class PlaneFit:
    """What :func:`fit_plane` returns for one plane.

    Attributes
    ----------
    mean, std : ndarray (Y, X) float32
        lambda and its standard deviation; NaN where not identifiable.
    identifiable : ndarray (Y, X) bool
    fields : ndarray (C, Y, X) float32
        The fields fitted.
    bandwidth : dict
        ``delta_um``, ``window_um`` and the evidence behind the choice (``selection``), and
        the noise model the std resamples with.
    tiles : list of dict
        One JSON-able row per tile: its valid part, ``fraction_identifiable``,
        ``lambda_median``, the closed-form flags ``cf_nonfinite_px`` and ``cf_degenerate``,
        and for the neural method its diagnostics and ``diverged``, ``retried``, ``fallback``
        (``"none"``, ``"retry"`` or ``"closed-form"``), ``dropped_px``.
    record : dict
        Bandwidths, tile plan, counts of flagged tiles and pixels, seconds (run.json);
        the medians of the std's calibration terms over the identifiable pixels
        (``std_calibration_term``, ``std_calibration_scale_term``; ``None`` where a term
        does not apply; :mod:`.calibration_terms`).
    """

    mean: np.ndarray
    std: np.ndarray
    identifiable: np.ndarray
    fields: np.ndarray
    bandwidth: dict[str, Any]
    tiles: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def noise_model(fields: np.ndarray, evidence: dict[str, Any] | None = None,
                foreground: np.ndarray | None = None) -> FieldNoise:
    """The plane's noise model: the one the bandwidth choice fitted (its evidence's ``noise``),
    else fitted the same way here on the central crop of ``fields`` (inside ``foreground``
    when given)."""
    ev = evidence or {}
    if ev.get("noise"):
        return FieldNoise.from_dicts(ev["noise"])
    mask = None if foreground is None else central_crop(np.asarray(foreground, bool))
    crop = central_crop(np.asarray(fields, dtype=np.float64))
    return FieldNoise(tuple(noise_models(crop, mask if mask is not None and mask.any()
                                         else None)))


def _finite_median(values: np.ndarray, where: np.ndarray) -> float:
    """Median of the finite ``values[where]`` (inf when there are none), with one copy."""
    v = values[where]
    v = v[np.isfinite(v)] if not np.isfinite(v).all() else v
    return float(np.median(v, overwrite_input=True)) if v.size else np.inf


def _closed_form_batch(tiles: np.ndarray, model: Any, delta: float, window: float,
                       px: float, est: Any, weight: np.ndarray | None
                       ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The closed form of a batch of ``(N, C, H, W)`` tiles at ``(delta, window)``, weighted
    by ``weight`` (the nuclei): its terms, lambda and least-squares denominator."""
    terms = linear_terms(tiles, model, delta, px, backend=est.backend)
    if weight is not None:
        terms.weight = terms.weight * weight
    lam, den = local_least_squares(terms, window, px, lambda_min=est.lambda_min,
                                   lambda_max=est.lambda_max)
    return terms, lam, den


def fit_plane(
    fields: np.ndarray,
    model: Any,
    pixel_size_um: float,
    settings: Any,
    *,
    foreground: np.ndarray | None = None,
    plane: int = 0,
    max_batch_px: int | None = None,
    progress: Callable[[dict], None] | None = None,
    alternative: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    channel_model: str | None = None,
) -> PlaneFit:
    """lambda, its std and its identifiability for one plane of ``(C, Y, X)`` fields.

    Parameters
    ----------
    fields
        The plane's fields in the model's channel order.
    model
        The residual model (:class:`~pipeline.physics.ChromatinModel`).
    pixel_size_um
        Grid spacing.
    settings
        :class:`~pipeline.config.Settings`: ``method``, ``estimator``, ``uncertainty``,
        ``neural``, ``run.tile_px``/``overlap_px``, ``seed``, ``device``.
    foreground
        Boolean ``(Y, X)``: the nuclei. The noise model and the bandwidth choice then look
        only inside them, away from their edges (a dark background has another noise level,
        and the nuclear edge is not chromatin structure).
    max_batch_px
        Window pixels per batch of tiles: memory is the plane's accumulators plus one batch.
        The result does not depend on it (tile ``n``'s seed is ``settings.seed + n``).
        Default :data:`BATCH_PX`; for the neural method on the CPU, that divided by the
        problems per tile (``ensemble_size + 1``: each trains its own networks).
    alternative
        The plane's fields under the calibration the image prefers, when its check contradicts
        the user's and the user's is kept (:func:`pipeline.calibration.alternative_fields`):
        the std adds what the two calibrations disagree on (:mod:`.calibration_terms`).
    saturated
        Boolean ``(Y, X)``: pixels clipped at the detector's ceiling
        (:func:`pipeline.saturation.saturated_pixels`), or NaN in the file
        (:func:`pipeline.plane_qc.missing_pixels`). They are holes in the nuclei: the noise
        model and the bandwidth choice skip them, and no pixel whose derivative support
        reaches one is fitted (its fields are flat there, not chromatin).
    channel_model
        ``"single-channel"`` or ``"two-channel"`` (the calibration record's ``model``): with
        ``settings.uncertainty.calibration_scale`` > 0 the std adds what each channel's stated
        scale uncertainty changes (:mod:`.calibration_terms`); without a model it does not.

    Examples
    --------
    >>> from pipeline.config import Settings
    >>> from pipeline.physics import ChromatinModel
    >>> f = np.stack([np.full((48, 48), 0.35), np.full((48, 48), 0.3)])
    >>> s = Settings(estimator={"delta_um": 0.1, "window_um": 0.1})
    >>> res = fit_plane(f + 0.001 * np.random.default_rng(0).normal(size=f.shape),
    ...                 ChromatinModel(), 0.02, s)
    >>> bool(abs(np.nanmedian(res.mean) - 1.0) < 0.2), bool(np.nanmedian(res.std) > 0)
    (True, True)
    """
    t0 = time.perf_counter()
    est = settings.estimator
    # the plane is held in float32 (24 bits: finer than any camera's 16-bit counts; lambda
    # moves by ~1e-5, a thousandth of its std) and its tiles are fitted in float64
    fields = np.asarray(fields, dtype=np.float32)
    fg = None if foreground is None else np.asarray(foreground, dtype=bool)
    if fg is not None and not fg.any():
        fg = None
    if saturated is not None and np.any(saturated):
        keep = ~np.asarray(saturated, dtype=bool)
        fg = keep if fg is None else fg & keep
    try:
        delta, window, selection = choose_bandwidths(fields, model, pixel_size_um, est,
                                                     seed=settings.seed, foreground=fg,
                                                     foreground_weight=fg is not None)
    except (TooSmallError, ValueError):  # too few pixels for the split or the noise fit
        if fg is None:
            raise
        log.warning("plane %d: the nuclei, away from their edges, leave too few pixels to "
                    "choose bandwidths on; choosing on the whole field", plane)
        delta, window, selection = choose_bandwidths(fields, model, pixel_size_um, est,
                                                     seed=settings.seed)
        selection["foreground"] = "nuclei too small to choose on: the whole field"
        selection["nuclei_too_small"] = True
    noise = noise_model(fields, selection, fg)
    release_freed_memory()  # the candidates' maps, before the plane's accumulators
    support = Mollifier(delta, pixel_size_um, model.derivatives).support_px
    # with nuclei, the least squares weigh only pixels farther inside them than the
    # derivative support: the nuclear edge and the background are not chromatin structure.
    # Nuclei too small to choose bandwidths on keep that rule: lambda is reported only where
    # a pixel lies farther inside a nucleus than the support, often nowhere (then it says so)
    inner = nuclei_weight(fg, support)
    if inner is not None and not inner.any():
        selection["nuclei_too_small"] = True
        log.warning("plane %d: no pixel lies farther inside a nucleus than the derivative "
                    "support (%.3g um, %d px), so no lambda is reported: the nuclei are too "
                    "small for the bandwidth the noise needs (check --pixel-size)", plane,
                    support * pixel_size_um, support)
    plan = plan_tiles(fields.shape[-2:], tile_px=settings.run.tile_px,
                      overlap_px=settings.run.overlap_px,
                      halo_px=halo_px(support, window, pixel_size_um))
    n = len(plan.tiles)
    # no interior to weigh: the closed form's empty windows give the NaN maps, no training
    neural = settings.method == "neural" and (inner is None or bool(inner.any()))
    if max_batch_px is None:
        max_batch_px = BATCH_PX
        if neural and resolve_device(settings.device).type == "cpu":
            max_batch_px //= settings.uncertainty.ensemble_size + 1
    per = max(1, max_batch_px // (plan.window[0] * plan.window[1]))
    weights = feather(plan)
    # float32 plane accumulators; the closed form's mean is its lam, blended once
    # closed-form tiles agree where they overlap (the halo makes them the untiled map), so a
    # NaN there is NaN in every covering tile and needs no lost-weight map; neural tiles differ
    # the std's calibration terms (calibration_terms): what the calibration may change
    sources = calibration_sources(alternative, channel_model,
                                  settings.uncertainty.calibration_scale)
    names = ("a2", "den", "mean", "std") + (("lam",) if neural else ()) + tuple(sources)
    acc = PlaneBlend(plan, names, dtype=np.float32,
                     propagate_nan=[k for k in names if not (neural and k in ("mean", "std"))])
    # finished rows leave the accumulators as the tiles advance: the maps go to these planes,
    # and the closed-form terms, needed again only for the plane's medians, to disk
    lam, std = np.empty(plan.shape, np.float32), np.empty(plan.shape, np.float32)
    cf_finite = np.empty(plan.shape, bool) if neural else None
    term_maps = {k: np.empty(plan.shape, np.float32) for k in sources}
    terms_file = RowFile(plan.shape, ("a2", "den"))
    diagnostics: list[dict] = [{} for _ in range(n)]
    cf_nonfinite = np.zeros(n, dtype=np.int64)
    cf_den_max = np.zeros(n)
    for s in range(0, n, per):  # stream: only one batch of tiles is ever held
        batch = plan.tiles[s : s + per]
        seeds = [int(settings.seed) + s + i for i in range(len(batch))]
        tiles = extract_tiles(fields, plan, tiles=batch).astype(np.float64)
        weight_b = None if inner is None else extract_tiles(inner, plan, tiles=batch
                                                            ).astype(np.float64)
        terms, lam_b, den_b = _closed_form_batch(tiles, model, delta, window, pixel_size_um,
                                                 est, weight_b)
        vals = {"a2": terms.a**2, "den": den_b} | ({"lam": lam_b} if neural else {})
        del terms
        for i, t in enumerate(batch):
            cut = valid_cut(t)
            a2v, denv, lamv = vals["a2"][i][cut], den_b[i][cut], lam_b[i][cut]
            with np.errstate(invalid="ignore"):
                # arithmetic failure (overflow, NaN), not a merely empty window
                bad = ~np.isfinite(a2v) | ~np.isfinite(denv) | (~np.isfinite(lamv) & (denv > 0))
            cf_nonfinite[s + i] = int(bad.sum())
            finite_den = denv[np.isfinite(denv)]
            cf_den_max[s + i] = float(finite_den.max()) if finite_den.size else np.nan
        cal_terms = {k: calibration_term(
            lam_b, src(tiles, plan, batch), lambda f, w=weight_b: _closed_form_batch(
                f, model, delta, window, pixel_size_um, est, w)[1])
            for k, src in sources.items()}
        if neural:
            from .neural import fit_tiles_guarded  # torch only when the method needs it

            out = fit_tiles_guarded(tiles, model, pixel_size_um, settings, lam_b,
                                    (delta, window), noise, seeds, progress, weight_b)
            vals |= {"mean": out["mean"], "std": out["std"]}
            diagnostics[s : s + len(batch)] = out["diagnostics"]
        else:
            with np.errstate(all="ignore"):
                std_b = closed_form_std(tiles, lam_b, model, pixel_size_um, delta, window, est,
                                        settings.uncertainty, noise, seeds, weight=weight_b)
            vals |= {"mean": lam_b, "std": std_b}
        for k, term in cal_terms.items():
            vals["std"] = np.sqrt(vals["std"] ** 2 + term**2)
            vals[k] = term
        for i, t in enumerate(batch):
            acc.add(t, weights[s + i], {k: v[i] for k, v in vals.items()})
        del tiles, vals
        r0 = acc.done  # rows above the next tile's valid part are final
        band = acc.take_rows(plan.tiles[s + per].valid[0] if s + per < n else plan.shape[0])
        if band:
            lam[r0 : acc.done], std[r0 : acc.done] = band["mean"], band["std"]
            if neural:
                cf_finite[r0 : acc.done] = np.isfinite(band["lam"])
            for k, m in term_maps.items():
                m[r0 : acc.done] = band[k]
            terms_file.write(band)
            del band
        release_freed_memory()  # the batch's temporaries: else the heap keeps growing holes
        if progress is not None:
            progress({"stage": "tiles", "plane": plane, "done": s + len(batch), "total": n})
    del acc
    inside = np.zeros(plan.shape, bool)
    if 2 * support < min(plan.shape):
        inside[support:-support, support:-support] = True
    else:
        inside[:] = True
    frac = est.identifiable_fraction
    # identifiability: the blended closed-form terms against the plane's medians, both methods
    ident = np.isfinite(lam) if cf_finite is None else cf_finite
    refs = {}
    for k in ("a2", "den"):  # one term's plane in memory at a time
        term = terms_file.read(k)
        refs[k] = _finite_median(term, inside)
        with np.errstate(invalid="ignore"):
            ident &= (term > frac * refs[k]) & np.isfinite(term)
        del term
    terms_file.close()
    ref_den = refs["den"]
    # no non-finite value inside the mask: a missing mean or std (a failed fit) drops the pixel
    # and is counted, except the NaN std of tiles that fell back to the closed form
    fallback_cover = np.zeros(plan.shape, bool)
    for t, diag in zip(plan.tiles, diagnostics, strict=True):
        if diag.get("fallback") == "closed-form":
            fallback_cover[valid_slices(t)] = True
    if saturated is not None and np.any(saturated):  # derivatives that see a clipped pixel
        ident &= ~binary_dilation(np.asarray(saturated, bool), iterations=int(support))
    if inner is not None:
        # lambda only where it is measured: at pixels farther inside a nucleus than the
        # derivative support. Nearer the edge the window's least squares see only pixels
        # deeper inside (the weight is ``inner``), so a value there would be the interior's,
        # carried outwards (on the stress suite's nuclei r 0.03-0.83 within 0.25 um of the
        # edge, docs/your-own-images.md)
        ident &= inner
    missing = ident & (~np.isfinite(lam) | (~np.isfinite(std) & ~fallback_cover))
    if missing.any():
        log.warning("plane %d: %d identifiable pixel(s) had no finite fitted value; marked not "
                    "identifiable", plane, int(missing.sum()))
        ident &= ~missing
    lam[~ident] = np.nan
    std[~ident] = np.nan
    rows = []
    for t, diag, nf, dmax in zip(plan.tiles, diagnostics, cf_nonfinite, cf_den_max, strict=True):
        sl = valid_slices(t)
        part, ok = lam[sl], ident[sl]
        rows.append({"plane": plane, "tile": t.index, "y0_px": t.valid[0], "y1_px": t.valid[1],
                     "x0_px": t.valid[2], "x1_px": t.valid[3],
                     "fraction_identifiable": float(ok.mean()),
                     "lambda_median": float(np.median(part[ok])) if ok.any() else None,
                     **{k: v for k, v in diag.items() if isinstance(v, int | float | str)},
                     "diverged": bool(diag.get("diverged", False)),
                     "retried": bool(diag.get("retried", False)),
                     "fallback": str(diag.get("fallback", "none")),
                     "cf_nonfinite_px": int(nf),
                     "cf_degenerate": bool(dmax <= frac * ref_den),  # NaN: non-finite
                     "dropped_px": int(missing[sl].sum())})
    if cf_nonfinite.any():
        log.warning("plane %d: the closed-form estimate was non-finite at %d pixel(s) in %d "
                    "tile(s) (see cf_nonfinite_px in the tile table); those pixels are not "
                    "identifiable", plane, int(cf_nonfinite.sum()), int((cf_nonfinite > 0).sum()))
    fallbacks = [r["fallback"] for r in rows]
    bandwidth = {"delta_um": delta, "window_um": window, "selection": selection,
                 "noise": noise.to_dict()}
    record = {"method": settings.method, **bandwidth,
              "support_um": support * pixel_size_um,  # no lambda nearer a nucleus's edge
              "tiling": plan.to_dict(),
              "fraction_identifiable": float(ident.mean()),
              "tiles_diverged": sum(r["diverged"] for r in rows),
              "tiles_fallback_retry": fallbacks.count("retry"),
              "tiles_fallback_closed_form": fallbacks.count("closed-form"),
              "cf_nonfinite_px": int(cf_nonfinite.sum()), "dropped_px": int(missing.sum()),
              **{key: (float(np.median(term_maps[k][ident]))
                       if k in term_maps and ident.any() else None)
                 for k, key in RECORD_KEYS.items()},
              "seconds": time.perf_counter() - t0}
    return PlaneFit(mean=lam, std=std, identifiable=ident, fields=fields, bandwidth=bandwidth,
                    tiles=rows, record=record)
