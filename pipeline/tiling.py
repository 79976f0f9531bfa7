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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .memory import drop_pages, mapped_zeros

__all__ = [
    "GAUSSIAN_TRUNCATE",
    "Tile",
    "TilePlan",
    "PlaneBlend",
    "blend_tiles",
    "extract_tiles",
    "feather",
    "feather_weights",
    "halo_px",
    "plan_tiles",
    "valid_cut",
    "valid_slices",
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


def feather(plan: TilePlan) -> _Feather:
    """The plan's feather weights, made per tile on demand (``feather(plan)[k]``)."""
    return _Feather(plan)


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


def valid_slices(tile: Tile) -> tuple[slice, slice]:
    """The tile's valid part in plane coordinates."""
    y0, y1, x0, x1 = tile.valid
    return slice(y0, y1), slice(x0, x1)


def valid_cut(tile: Tile) -> tuple[slice, slice]:
    """The tile's valid part in window coordinates."""
    y0, y1, x0, x1 = tile.valid
    return (slice(y0 - tile.window[0], y1 - tile.window[0]),
            slice(x0 - tile.window[2], x1 - tile.window[2]))


class PlaneBlend:
    """Feathered-weighted sums of named per-tile maps over one plane, added tile by tile.

    Only plane-size accumulators are kept: one numerator per map, one weight sum shared by
    every map, and, per map that has held a NaN, the weight its NaN pixels did not get
    (``lost``). ``lost`` starts as lazily allocated zeros and is written only at NaN pixels,
    so for the usual few NaN pixels (the empty windows at the image edge) it stays almost
    wholly unallocated, where a full copy of the weight sum would cost one more plane.
    A pixel's weight is ``common - lost``: exactly 0 where every covering tile was NaN (both
    sums add the same weights in the same order), and within rounding of the sum of the
    finite tiles' weights elsewhere. Maps named in ``propagate_nan`` keep no ``lost``: a pixel
    any of whose tiles is NaN there is NaN (for maps whose tiles agree where they overlap,
    such as the closed form's, which the halo makes equal to the untiled map). Adding tiles in plan order gives bit for bit what
    summing all tiles at once gives, whatever the batches.
    """

    def __init__(self, plan: TilePlan, names: Sequence[str], lead: tuple[int, ...] = (),
                 dtype: np.typing.DTypeLike = np.float64, *,
                 propagate_nan: Sequence[str] = ()):
        self.plan = plan
        self.dtype = np.dtype(dtype)
        self.propagate = frozenset(propagate_nan)
        self.shape = lead + plan.shape
        self._maps: dict[int, Any] = {}  # id(array) -> its memory map, for drop_pages
        self.num = {k: self._zeros() for k in names}
        self.lost: dict[str, np.ndarray] = {}
        self.common = self._zeros()
        self.done = 0
        """Rows ``[0, done)`` were handed out by :meth:`take_rows` and are no longer held."""

    def _zeros(self) -> np.ndarray:
        a, m = mapped_zeros(self.shape, self.dtype)
        self._maps[id(a)] = m
        return a

    def add(self, tile: Tile, weight: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Add one tile's window-shaped maps ``values`` with its valid-part ``weight``."""
        y0, y1, x0, x1 = tile.valid
        cut = (..., slice(y0 - tile.window[0], y1 - tile.window[0]),
               slice(x0 - tile.window[2], x1 - tile.window[2]))
        dst = (..., slice(y0, y1), slice(x0, x1))
        for k, v in values.items():
            part = np.asarray(v, dtype=np.float64)[cut]
            if k in self.propagate:  # a NaN tile makes the pixel NaN: no lost weight to keep
                self.num[k][dst] += weight * part
                continue
            ok = np.isfinite(part)
            if ok.all():
                self.num[k][dst] += weight * part
                continue
            self.num[k][dst] += np.where(ok, weight, 0.0) * np.where(ok, part, 0.0)
            if k not in self.lost:
                self.lost[k] = self._zeros()  # pages untouched: only NaN pixels cost memory
            view, bad = self.lost[k][dst], ~ok
            view[bad] += np.broadcast_to(weight, part.shape)[bad]  # touches NaN pixels only
        self.common[dst] += weight

    def take_rows(self, stop: int) -> dict[str, np.ndarray]:
        """The normalised rows ``[done, stop)`` of every map (NaN where no tile gave a finite
        value), as new arrays; the accumulators' memory for those rows is given back.

        Call it only for rows that no tile still to be added touches: with tiles added in
        plan order, the rows above the next tile's valid part. A plane is then held as a band
        of a few tile rows, not whole (values equal :meth:`result`'s bit for bit).
        """
        r0, stop = self.done, min(int(stop), self.plan.shape[0])
        if stop <= r0:
            return {}
        rows = (..., slice(r0, stop), slice(None))
        common = self.common[rows]
        out = {}
        for k, num in self.num.items():
            lost = self.lost.get(k)
            den = common if lost is None else np.subtract(common, lost[rows])
            pos = den > 0
            v = np.array(num[rows])
            np.divide(v, den, out=v, where=pos)
            v[~pos] = np.nan
            out[k] = v
        for a in (*self.num.values(), *self.lost.values(), self.common):
            self._drop(a, r0, stop)
        self.done = stop
        return out

    def _drop(self, a: np.ndarray, r0: int, r1: int) -> None:
        """Give back the pages of rows ``[r0, r1)`` of ``a`` (every leading index)."""
        m = self._maps.get(id(a))
        if m is None:
            return
        row = a.shape[-1] * a.itemsize
        plane = a.shape[-2] * row
        for j in range(int(np.prod(a.shape[:-2], dtype=np.int64))):
            drop_pages(m, j * plane + r0 * row, j * plane + r1 * row, low=j * plane)

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
    acc = PlaneBlend(plan, ("v",), vals.shape[1:-2])
    for k, (t, v) in enumerate(zip(plan.tiles, vals, strict=True)):
        acc.add(t, weights[k], {"v": v})
    return acc.result("v")
