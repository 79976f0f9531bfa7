"""Tiles with halos, and their feathered blend back into one map.

A plane of shape ``(Y, X)`` is covered by equal **windows** of side ``tile + 2 * halo``
(clipped to the image when it is smaller). Windows are spread evenly from edge to edge, so each
lies wholly inside the image and all have one shape: a plane's tiles batch into one array.
Of each window only the **valid** part is kept: the window minus its halo on every side that
faces another tile; on a side that is the image edge nothing is cut, because there the tile's
own border handling *is* the image's. Adjacent valid parts overlap by at least ``overlap``
pixels and are blended with separable cosine (Hann) ramps across that overlap, then
normalised by the summed weights, so that no seam shows.

The halo comes from the operator, not a guess (:func:`halo_px`): an output pixel of the
closed-form estimator depends on fields within the mollifier support plus the Gaussian
window's truncation radius. With that halo the tiled closed-form map equals the untiled one up
to floating-point rounding.

Examples
--------
>>> plan = plan_tiles((100, 70), tile_px=40, overlap_px=8, halo_px=6)
>>> plan.window, len(plan.tiles)
((52, 52), 6)
>>> img = np.arange(7000.0).reshape(100, 70)
>>> bool(np.allclose(blend_tiles(extract_tiles(img, plan), plan), img))
True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "GAUSSIAN_TRUNCATE",
    "Tile",
    "TilePlan",
    "blend_tiles",
    "fit_plane",
    "extract_tiles",
    "feather_weights",
    "halo_px",
    "plan_tiles",
]

log = logging.getLogger(__name__)

GAUSSIAN_TRUNCATE = 3.0
"""Truncation (in sigmas) of the rate window, as in :mod:`pipeline.estimate.closed_form`."""


def halo_px(support_px: int, window_um: float, pixel_size_um: float) -> int:
    """Halo that makes a tile's valid part independent of its cut edges.

    An output pixel of ``G_s * (w A B) / G_s * (w A^2)`` reads ``A`` and ``B`` within the
    Gaussian's radius ``int(3 s + 0.5)`` (scipy's truncation), and each of those reads fields
    within the mollifier's ``support_px``; the tile's zero-weight border band is also
    ``support_px`` wide. So the halo is the sum of the two radii.

    Examples
    --------
    >>> halo_px(16, 0.1, 0.02)
    31
    """
    sigma_px = float(window_um) / float(pixel_size_um)
    return int(support_px) + int(GAUSSIAN_TRUNCATE * sigma_px + 0.5)


@dataclass(frozen=True)
class Tile:
    """One tile: its window in the plane and the valid part kept from it (half-open)."""

    index: int
    window: tuple[int, int, int, int]  # y0, y1, x0, x1
    valid: tuple[int, int, int, int]


@dataclass(frozen=True)
class TilePlan:
    """Tiles covering a plane ``shape``; every window has shape ``window``."""

    shape: tuple[int, int]
    tile_px: int
    overlap_px: int
    halo_px: int
    window: tuple[int, int]
    tiles: tuple[Tile, ...]

    def to_dict(self) -> dict:
        """JSON-able summary (the tiles themselves are listed in the tile table)."""
        return {"shape": list(self.shape), "tile_px": self.tile_px,
                "overlap_px": self.overlap_px, "halo_px": self.halo_px,
                "window": list(self.window), "n_tiles": len(self.tiles)}


def _axis(length: int, tile: int, overlap: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(window start, window stop, valid start, valid stop)`` along one axis."""
    size = min(length, tile + 2 * halo)
    if size == length:
        return [(0, length, 0, length)]
    step = max(1, tile - overlap)
    n = 1 + math.ceil((length - size) / step)
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    out = []
    for i, s in enumerate(starts):
        v0 = s if i == 0 else s + halo
        v1 = s + size if i == n - 1 else s + size - halo
        out.append((s, s + size, v0, v1))
    return out


def plan_tiles(
    shape: tuple[int, int], *, tile_px: int, overlap_px: int, halo_px: int
) -> TilePlan:
    """Cover ``shape`` with equal windows of side ``tile_px + 2 * halo_px``.

    Parameters
    ----------
    shape : (int, int)
        Plane shape ``(Y, X)``.
    tile_px : int
        Side of an interior tile's valid part (the work per tile).
    overlap_px : int
        Minimum overlap of adjacent valid parts; the width of the feathered blend.
    halo_px : int
        Context cut from every side that faces another tile (see :func:`halo_px`).

    Raises
    ------
    ValueError
        If ``overlap_px >= tile_px`` or a size is negative.
    """
    if tile_px < 1 or overlap_px < 0 or halo_px < 0 or overlap_px >= tile_px:
        raise ValueError(
            f"need tile_px > overlap_px >= 0 and halo_px >= 0; got tile_px={tile_px}, "
            f"overlap_px={overlap_px}, halo_px={halo_px}"
        )
    ys = _axis(int(shape[0]), tile_px, overlap_px, halo_px)
    xs = _axis(int(shape[1]), tile_px, overlap_px, halo_px)
    tiles = tuple(
        Tile(i * len(xs) + j, (y[0], y[1], x[0], x[1]), (y[2], y[3], x[2], x[3]))
        for i, y in enumerate(ys)
        for j, x in enumerate(xs)
    )
    window = (ys[0][1] - ys[0][0], xs[0][1] - xs[0][0])
    return TilePlan((int(shape[0]), int(shape[1])), tile_px, overlap_px, halo_px, window, tiles)


def _ramp_1d(valid: tuple[int, int], lo_zone: int, hi_zone: int) -> np.ndarray:
    """Weights over a valid span: Hann ramps up over ``lo_zone`` px and down over ``hi_zone``."""
    n = valid[1] - valid[0]
    w = np.ones(n)
    for zone, sl in ((lo_zone, slice(0, None)), (hi_zone, slice(None, None, -1))):
        z = min(max(zone, 0), n)
        if z:
            t = (np.arange(z) + 0.5) / z  # never exactly 0: every valid pixel keeps a weight
            w[sl][:z] = np.minimum(w[sl][:z], np.sin(0.5 * np.pi * t) ** 2)
    return w


class _Feather:
    """Feather weights of a plan's tiles, made one tile at a time from cached 1-D ramps.

    A tile's weight is ``outer(wy, wx)`` of its row band's and column band's ramps; building
    it on demand keeps only the few 1-D ramps, not one valid-part map per tile (all of them
    together cover the plane about 1.3 times over).
    """

    def __init__(self, plan: TilePlan) -> None:
        def zones(spans: list[tuple[int, int]], k: int) -> tuple[int, int]:
            lo = spans[k - 1][1] - spans[k][0] if k > 0 else 0
            hi = spans[k][1] - spans[k + 1][0] if k < len(spans) - 1 else 0
            return lo, hi

        ys = sorted({(t.valid[0], t.valid[1]) for t in plan.tiles})
        xs = sorted({(t.valid[2], t.valid[3]) for t in plan.tiles})
        self.plan = plan
        self.wy = {span: _ramp_1d(span, *zones(ys, k)) for k, span in enumerate(ys)}
        self.wx = {span: _ramp_1d(span, *zones(xs, k)) for k, span in enumerate(xs)}

    def __len__(self) -> int:
        return len(self.plan.tiles)

    def __getitem__(self, k: int) -> np.ndarray:
        t = self.plan.tiles[k]
        return np.outer(self.wy[(t.valid[0], t.valid[1])], self.wx[(t.valid[2], t.valid[3])])


def feather_weights(plan: TilePlan) -> list[np.ndarray]:
    """One weight map per tile over its valid part: 1 inside, cos² ramps across overlaps.

    Adjacent ramps are complementary (sin² + cos² = 1) where two tiles meet; the blend
    divides by the summed weights anyway, so three-way overlaps are handled too.
    """
    f = _Feather(plan)
    return [f[k] for k in range(len(f))]


def extract_tiles(array: np.ndarray, plan: TilePlan, *, tiles: Sequence[Tile] | None = None
                  ) -> np.ndarray:
    """Stack the windows of ``array (..., Y, X)`` into ``(N, ..., wy, wx)``.

    ``tiles`` (default: all of the plan's) picks a batch, so a caller can stream a plane.
    """
    arr = np.asarray(array)
    if tuple(arr.shape[-2:]) != plan.shape:
        raise ValueError(f"array of shape {arr.shape} does not match the plan's {plan.shape}")
    return np.stack([arr[..., t.window[0] : t.window[1], t.window[2] : t.window[3]]
                     for t in (plan.tiles if tiles is None else tiles)])


def _valid_slices(tile: Tile) -> tuple[slice, slice]:
    """The tile's valid part in plane coordinates."""
    y0, y1, x0, x1 = tile.valid
    return slice(y0, y1), slice(x0, x1)


def _valid_cut(tile: Tile) -> tuple[slice, slice]:
    """The tile's valid part in window coordinates."""
    y0, y1, x0, x1 = tile.valid
    return (slice(y0 - tile.window[0], y1 - tile.window[0]),
            slice(x0 - tile.window[2], x1 - tile.window[2]))


class _PlaneBlend:
    """Feathered-weighted sums of named per-tile maps over one plane, added tile by tile.

    Only plane-size accumulators are kept: one numerator per map, one weight sum shared by
    every map, and, per map that has held a NaN, the weight its NaN pixels did not get
    (``lost``). ``lost`` starts as lazily allocated zeros and is written only at NaN pixels,
    so for the usual few NaN pixels (the empty windows at the image edge) it stays almost
    wholly unallocated, where a full copy of the weight sum would cost one more plane.
    A pixel's weight is ``common - lost``: exactly 0 where every covering tile was NaN (both
    sums add the same weights in the same order), and within rounding of the sum of the
    finite tiles' weights elsewhere. Adding tiles in plan order gives bit for bit what
    summing all tiles at once gives, whatever the batches.
    """

    def __init__(self, plan: TilePlan, names: Sequence[str], lead: tuple[int, ...] = ()):
        self.plan = plan
        self.num = {k: np.zeros(lead + plan.shape) for k in names}
        self.lost: dict[str, np.ndarray] = {}
        self.common = np.zeros(lead + plan.shape)

    def add(self, tile: Tile, weight: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Add one tile's window-shaped maps ``values`` with its valid-part ``weight``."""
        y0, y1, x0, x1 = tile.valid
        cut = (..., slice(y0 - tile.window[0], y1 - tile.window[0]),
               slice(x0 - tile.window[2], x1 - tile.window[2]))
        dst = (..., slice(y0, y1), slice(x0, x1))
        for k, v in values.items():
            part = np.asarray(v, dtype=np.float64)[cut]
            ok = np.isfinite(part)
            if ok.all():
                self.num[k][dst] += weight * part
                continue
            self.num[k][dst] += np.where(ok, weight, 0.0) * np.where(ok, part, 0.0)
            if k not in self.lost:
                self.lost[k] = np.zeros(self.common.shape)  # calloc: pages untouched
            view, bad = self.lost[k][dst], ~ok
            view[bad] += np.broadcast_to(weight, part.shape)[bad]  # touches NaN pixels only
        self.common[dst] += weight

    def result(self, name: str) -> np.ndarray:
        """The normalised map (NaN where no tile gave a finite value), computed in place in
        its numerator, which the accumulator then forgets."""
        num = self.num.pop(name)
        lost = self.lost.pop(name, None)
        den = self.common if lost is None else np.subtract(self.common, lost, out=lost)
        pos = den > 0
        np.divide(num, den, out=num, where=pos)
        num[~pos] = np.nan
        return num


def blend_tiles(values: np.ndarray, plan: TilePlan, *,
                weights: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Blend per-tile maps ``(N, ..., wy, wx)`` into ``(..., Y, X)`` with feathered weights.

    NaN values carry no weight; a pixel where every covering tile is NaN stays NaN.
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape[0] != len(plan.tiles) or tuple(vals.shape[-2:]) != plan.window:
        raise ValueError(f"values of shape {vals.shape} do not match {len(plan.tiles)} tiles "
                         f"of {plan.window}")
    weights = _Feather(plan) if weights is None else weights
    acc = _PlaneBlend(plan, ("v",), vals.shape[1:-2])
    for k, (t, v) in enumerate(zip(plan.tiles, vals, strict=True)):
        acc.add(t, weights[k], {"v": v})
    return acc.result("v")


# ----------------------------------------------------------------------------- tiled fit
def _select(fields: np.ndarray, model: Any, pixel_size_um: float, est: Any, seed: int
            ) -> tuple[float, float, dict]:
    """Bandwidths for a plane: fixed by the user, or chosen once on a central crop."""
    from .estimate import choose_bandwidths

    return choose_bandwidths(fields, model, pixel_size_um, est, seed=seed)


def _neural(tiles: np.ndarray, model: Any, pixel_size_um: float, settings: Any,
            init: np.ndarray, bandwidth: tuple[float, float],
            progress: Callable[[dict], None] | None, first: int = 0, *,
            index: Sequence[int] | None = None, dtype: str = "float32") -> dict:
    """The one call site of the neural per-tile fit, for a batch starting at tile ``first``.

    Tile ``n`` of the plane gets seed ``settings.seed + n`` whatever the batch, so the result
    does not depend on ``max_batch_px``; ``index`` gives the plane indices of ``tiles`` when
    they are not consecutive (a retry of some tiles of a batch).
    """
    try:
        from .estimate.neural import fit_tiles
    except ImportError as exc:
        raise NotImplementedError(
            "method 'neural' is not available in this build yet; use --method closed-form"
        ) from exc
    seed: int | list[int] = (int(settings.seed) + int(first) if index is None
                             else [int(settings.seed) + int(i) for i in index])
    return fit_tiles(tiles, model, pixel_size_um, settings, init_lambda=init,
                     bandwidth=bandwidth, seed=seed, device=settings.device, dtype=dtype,
                     progress=progress, mask=False)  # the plane's mask applies (fit_plane)


def _safer(settings: Any) -> Any:
    """Settings of the retry of a diverged tile: both learning rates times
    ``neural.retry_lr_factor`` and twice the epochs (run in float64 by the caller)."""
    nn = settings.neural
    f = float(nn.retry_lr_factor)
    safer = nn.model_copy(update={"lr_rate": nn.lr_rate * f, "lr_field": nn.lr_field * f,
                                  "epochs": max(1, 2 * nn.epochs)})
    return settings.model_copy(update={"neural": safer})


def _failed(out: dict, i: int) -> bool:
    """Whether tile ``i`` of a :func:`_neural` result diverged or left a non-finite mean or
    std where the fit itself called the tile identifiable."""
    ok = np.asarray(out["identifiable"][i], bool)
    return (bool(out["diagnostics"][i].get("diverged"))
            or not np.isfinite(out["mean"][i][ok]).all()
            or not np.isfinite(out["std"][i][ok]).all())


def _neural_guarded(tiles: np.ndarray, model: Any, pixel_size_um: float, settings: Any,
                    init: np.ndarray, bandwidth: tuple[float, float],
                    progress: Callable[[dict], None] | None, first: int) -> dict:
    """:func:`_neural` with divergence handling, per tile of the batch.

    A tile whose fit diverged (:func:`_failed`) is refitted once, alone with the other failed
    tiles of the batch, with :func:`_safer` settings in float64 and the same seeds. If the
    retry also fails the tile falls back to the closed-form estimate ``init``: its mean is the
    closed-form λ and its std is NaN, because the closed form gives no uncertainty and
    inventing one would be dishonest (the closed-form method's std is NaN everywhere too).
    Each tile's diagnostics get ``diverged`` (first attempt), ``retried`` and ``fallback``
    (``"none"``, ``"retry"`` or ``"closed-form"``).
    """
    out = _neural(tiles, model, pixel_size_um, settings, init, bandwidth, progress, first)
    mean = np.array(out["mean"], dtype=np.float64)  # float64: a fallback keeps init exactly
    std = np.array(out["std"], dtype=np.float64)
    diags = [dict(d) for d in out["diagnostics"]]
    bad = [i for i in range(len(tiles)) if _failed(out, i)]
    for i, d in enumerate(diags):
        d |= {"diverged": i in bad, "retried": False, "fallback": "none"}
    if not bad:
        return {"mean": mean, "std": std, "diagnostics": diags}
    log.warning("neural fit: %d tile(s) diverged (tiles %s); retrying with learning rates x%g, "
                "%d epochs, float64", len(bad), [first + i for i in bad],
                settings.neural.retry_lr_factor, max(1, 2 * settings.neural.epochs))
    idx = np.asarray(bad)
    again = _neural(tiles[idx], model, pixel_size_um, _safer(settings), init[idx], bandwidth,
                    progress, index=[first + i for i in bad], dtype="float64")
    for j, i in enumerate(bad):
        if not _failed(again, j):
            mean[i], std[i] = again["mean"][j], again["std"][j]
            diags[i] = dict(again["diagnostics"][j]) | {"diverged": True, "retried": True,
                                                         "fallback": "retry"}
            continue
        log.warning("neural fit: tile %d diverged again; using its closed-form estimate "
                    "(std NaN)", first + i)
        mean[i], std[i] = init[i], np.nan
        diags[i] = dict(again["diagnostics"][j]) | {"diverged": True, "retried": True,
                                                     "fallback": "closed-form"}
    return {"mean": mean, "std": std, "diagnostics": diags}


def _finite_median(values: np.ndarray, where: np.ndarray) -> float:
    """Median of the finite ``values[where]`` (inf when there are none), with one copy."""
    v = values[where]
    v = v[np.isfinite(v)] if not np.isfinite(v).all() else v
    return float(np.median(v, overwrite_input=True)) if v.size else np.inf


def fit_plane(
    fields: np.ndarray,
    model: Any,
    pixel_size_um: float,
    settings: Any,
    *,
    selection_fields: np.ndarray | None = None,
    plane: int = 0,
    max_batch_px: int = 1_000_000,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Rate map of one plane of ``(C, Y, X)`` fields, fitted tile by tile and blended.

    Bandwidths are chosen once for the plane (on ``selection_fields``, default ``fields``),
    then fixed for every tile. Tiles are streamed in batches of at most ``max_batch_px`` window
    pixels: each batch is cut out, fitted (closed form, then the neural fit started from it)
    and added to plane-size feathered sums, so memory is the plane's accumulators plus one
    batch, never every tile at once. The closed-form terms ``lam``, ``A^2`` and
    ``G_s*(w A^2)`` are blended, and the identifiability test uses medians over the whole
    plane, exactly as untiled. The result does not depend on ``max_batch_px`` (tile ``n``'s
    neural seed is ``settings.seed + n`` whatever its batch). The default of 1 M window
    pixels keeps a batch's FFT working set near 1 GB; larger batches are no faster on CPU
    (docs/throughput.md).

    Numerical guards: ``mean`` is finite at every identifiable pixel and NaN elsewhere. The
    closed-form λ is identifiable only where it is finite; a neural tile that diverges is
    retried once with safer settings and, failing that, takes its closed-form λ
    (:func:`_neural_guarded`); a neural pixel left without a finite value is dropped from the
    mask and counted (``dropped_px``). ``std`` is finite at identifiable pixels for the neural
    method, except where only closed-form fallback tiles cover the pixel (NaN: no uncertainty);
    it is NaN everywhere for the closed-form method.

    Returns
    -------
    dict
        ``mean``, ``std`` (Y, X) float32 (NaN where not identifiable); ``identifiable`` bool;
        ``fields`` (C, Y, X) the fields fitted; ``record`` (bandwidths, selection, tile plan,
        counts of flagged tiles and pixels, seconds); ``tiles`` (one JSON-able row per tile:
        its valid part, ``fraction_identifiable``, ``lambda_median``, the neural diagnostics,
        and the flags ``diverged`` (first neural attempt), ``retried``, ``fallback``
        (``"none"``, ``"retry"`` or ``"closed-form"``), ``cf_nonfinite_px`` (valid pixels where
        the closed-form terms or λ were non-finite although the local system was not empty),
        ``cf_degenerate`` (the local least-squares system is empty or near-singular over the
        whole tile: no pixel's window information ``G_s*(w A^2)`` reaches the identifiability
        fraction of the plane's median) and ``dropped_px``).
    """
    from .estimate import linear_terms, local_least_squares
    from .mollifier import Mollifier

    t0 = time.perf_counter()
    est = settings.estimator
    fields = np.asarray(fields, dtype=np.float64)
    sel_src = fields if selection_fields is None else selection_fields
    delta, window, selection = _select(sel_src, model, pixel_size_um, est, settings.seed)
    support = Mollifier(delta, pixel_size_um, model.derivatives).support_px
    plan = plan_tiles(fields.shape[-2:], tile_px=settings.run.tile_px,
                      overlap_px=settings.run.overlap_px,
                      halo_px=halo_px(support, window, pixel_size_um))
    n = len(plan.tiles)
    per = max(1, max_batch_px // (plan.window[0] * plan.window[1]))
    neural = settings.method == "neural"
    weights = _Feather(plan)  # made per tile as the stream needs it
    acc = _PlaneBlend(plan, ("lam", "a2", "den") + (("mean", "std") if neural else ()))
    diagnostics: list[dict] = [{} for _ in range(n)]
    cf_nonfinite = np.zeros(n, dtype=np.int64)  # per tile, see the tile rows below
    cf_den_max = np.zeros(n)
    for s in range(0, n, per):  # stream: only one batch of tiles is ever held
        batch = plan.tiles[s : s + per]
        tiles = extract_tiles(fields, plan, tiles=batch)
        terms = linear_terms(tiles, model, delta, pixel_size_um, backend=est.backend)
        lam_b, den_b = local_least_squares(terms, window, pixel_size_um,
                                           lambda_min=est.lambda_min, lambda_max=est.lambda_max)
        vals = {"lam": lam_b, "a2": terms.a**2, "den": den_b}
        del terms
        for i, t in enumerate(batch):
            cut = _valid_cut(t)
            a2v, denv, lamv = vals["a2"][i][cut], den_b[i][cut], lam_b[i][cut]
            with np.errstate(invalid="ignore"):
                # arithmetic failure (overflow, NaN), not a merely empty window: 0/0 is not
                # counted here, it is the degenerate case
                bad = ~np.isfinite(a2v) | ~np.isfinite(denv) | (~np.isfinite(lamv) & (denv > 0))
            cf_nonfinite[s + i] = int(bad.sum())
            finite_den = denv[np.isfinite(denv)]
            cf_den_max[s + i] = float(finite_den.max()) if finite_den.size else np.nan
        if progress is not None:
            progress({"stage": "tiles", "plane": plane, "done": s + len(batch), "total": n})
        if neural:
            out = _neural_guarded(tiles, model, pixel_size_um, settings, lam_b,
                                  (delta, window), progress, s)
            vals |= {"mean": out["mean"], "std": out["std"]}
            diagnostics[s : s + len(batch)] = out["diagnostics"]
        for i, t in enumerate(batch):
            acc.add(t, weights[s + i], {k: v[i] for k, v in vals.items()})
        del tiles, vals
    a2, den = acc.result("a2"), acc.result("den")
    lam_cf = acc.result("lam")
    lam = acc.result("mean") if neural else lam_cf
    std = acc.result("std") if neural else None  # closed form: no uncertainty (NaN)
    inside = np.zeros(plan.shape, bool)
    if 2 * support < min(plan.shape):
        inside[support:-support, support:-support] = True
    else:
        inside[:] = True
    ref, ref_den = _finite_median(a2, inside), _finite_median(den, inside)
    frac = est.identifiable_fraction
    # identifiability is the closed-form map's, as untiled, for both methods
    with np.errstate(invalid="ignore"):
        ident = (a2 > frac * ref) & (den > frac * ref_den) & np.isfinite(lam_cf)
    ident &= np.isfinite(a2) & np.isfinite(den)
    del a2, den, lam_cf
    # guard: no non-finite value inside the identifiable mask. The closed-form mean is finite
    # there by construction; the neural fit returns values everywhere (mask=False), so a neural
    # mean or std can be missing only where the fit failed. Such pixels are
    # dropped from the mask and counted, never reported as identifiable with NaN. The one
    # exception is the std of tiles that fell back to the closed form (NaN: no uncertainty).
    fallback_cover = np.zeros(plan.shape, bool)
    for t, diag in zip(plan.tiles, diagnostics, strict=True):
        if diag.get("fallback") == "closed-form":
            fallback_cover[_valid_slices(t)] = True
    missing = ident & ~np.isfinite(lam)
    if neural:
        missing |= ident & ~np.isfinite(std) & ~fallback_cover
    if missing.any():
        log.warning("plane %d: %d identifiable pixel(s) had no finite fitted value; marked not "
                    "identifiable", plane, int(missing.sum()))
        ident &= ~missing
    lam[~ident] = np.nan  # in place: the plane is large
    if std is not None:
        std[~ident] = np.nan
    rows = []
    for t, diag, nf, dmax in zip(plan.tiles, diagnostics, cf_nonfinite, cf_den_max, strict=True):
        sl = _valid_slices(t)
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
    record = {"delta_um": delta, "window_um": window, "selection": selection,
              "tiling": plan.to_dict(), "fraction_identifiable": float(ident.mean()),
              "tiles_diverged": sum(r["diverged"] for r in rows),
              "tiles_fallback_retry": fallbacks.count("retry"),
              "tiles_fallback_closed_form": fallbacks.count("closed-form"),
              "cf_nonfinite_px": int(cf_nonfinite.sum()), "dropped_px": int(missing.sum()),
              "seconds": time.perf_counter() - t0}
    mean = lam.astype(np.float32)
    del lam
    std = np.full(plan.shape, np.nan, np.float32) if std is None else std.astype(np.float32)
    return {"mean": mean, "std": std, "identifiable": ident, "fields": fields.astype(np.float32), "record": record,
            "tiles": rows}
