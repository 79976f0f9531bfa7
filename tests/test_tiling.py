"""Tile plans and feathered blending (the fit over tiles: tests/estimate/test_fit.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.tiling import blend_tiles, extract_tiles, feather_weights, plan_tiles

sizes = st.tuples(st.integers(8, 300), st.integers(8, 300))


@settings(max_examples=60, deadline=None)
@given(shape=sizes, tile=st.integers(4, 80), frac=st.floats(0, 0.9), halo=st.integers(0, 20))
def test_plan_covers_and_blends_exactly(shape, tile, frac, halo):
    overlap = min(int(frac * tile), tile - 1)
    plan = plan_tiles(shape, tile_px=tile, overlap_px=overlap, halo_px=halo)
    cover = np.zeros(shape, int)
    for t in plan.tiles:
        y0, y1, x0, x1 = t.window
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]
        assert (y1 - y0, x1 - x0) == plan.window  # one shape: batchable
        v = t.valid
        assert y0 <= v[0] < v[1] <= y1 and x0 <= v[2] < v[3] <= x1
        cover[v[0] : v[1], v[2] : v[3]] += 1
    assert cover.min() >= 1
    img = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_allclose(blend_tiles(extract_tiles(img, plan), plan), img, atol=1e-12)
    for w in feather_weights(plan):
        assert w.min() > 0 and w.max() <= 1


def test_adjacent_ramps_sum_to_one():
    plan = plan_tiles((1, 200), tile_px=60, overlap_px=20, halo_px=5)
    total = np.zeros((1, 200))
    for t, w in zip(plan.tiles, feather_weights(plan), strict=True):
        total[:, t.valid[2] : t.valid[3]] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_nan_carries_no_weight():
    plan = plan_tiles((40, 40), tile_px=16, overlap_px=8, halo_px=2)
    vals = extract_tiles(np.ones((40, 40)), plan)
    vals[0] = np.nan
    out = blend_tiles(vals, plan)
    assert np.nanmax(np.abs(out - 1)) < 1e-12
    assert np.isnan(out[0, 0])  # only tile 0 covers the corner


def test_bad_plan_is_refused():
    with pytest.raises(ValueError, match="overlap_px"):
        plan_tiles((64, 64), tile_px=16, overlap_px=16, halo_px=0)


def test_blend_accumulator_handles_nan_after_finite_tiles():
    """A map that turns NaN only in a later tile gets its own weight sum from then on."""
    plan = plan_tiles((40, 40), tile_px=16, overlap_px=8, halo_px=2)
    vals = extract_tiles(np.arange(1600.0).reshape(40, 40), plan)
    vals[-1, :, :] = np.nan
    ref = np.arange(1600.0).reshape(40, 40)
    out = blend_tiles(vals, plan)
    assert np.isnan(out[-1, -1])  # only the last tile covers the corner
    np.testing.assert_allclose(out[np.isfinite(out)], ref[np.isfinite(out)], atol=1e-9)


def test_propagated_nan_needs_no_lost_weight_map():
    """A map named in propagate_nan is NaN wherever any covering tile is NaN, and keeps no
    plane-size lost-weight map; the default map next to it skips the NaN tile instead."""
    from pipeline.tiling import PlaneBlend, feather

    plan = plan_tiles((40, 40), tile_px=16, overlap_px=8, halo_px=2)
    vals = extract_tiles(np.ones((40, 40)), plan)
    vals[0, :4, :4] = np.nan  # tile 0's corner: covered by tile 0 only
    vals[0, 10:14, 10:14] = np.nan  # inside the overlap of tiles 0, 1, 3 and 4
    acc = PlaneBlend(plan, ("skip", "prop"), dtype=np.float32, propagate_nan=("prop",))
    w = feather(plan)
    for k, t in enumerate(plan.tiles):
        acc.add(t, w[k], {"skip": vals[k], "prop": vals[k]})
    assert "prop" not in acc.lost and "skip" in acc.lost
    prop, skip = acc.result("prop"), acc.result("skip")
    assert prop.dtype == np.float32
    bad = np.isnan(prop)
    assert bad[:4, :4].all() and bad[10:14, 10:14].all() and bad.sum() == 32
    assert np.isnan(skip[:4, :4]).all() and np.isfinite(skip[10:14, 10:14]).all()
    np.testing.assert_allclose(prop[~bad], 1.0, rtol=1e-6)


def test_rows_taken_as_tiles_advance_equal_the_whole_plane_and_are_given_back():
    """take_rows, called after each tile for the rows no later tile touches, hands out
    exactly what result() gives for the whole plane (NaN tiles included), and the pages of
    the rows handed out are given back: they read as zeros in the accumulators."""
    from pipeline.memory import PAGE
    from pipeline.tiling import PlaneBlend, feather

    rng = np.random.default_rng(3)
    plan = plan_tiles((700, 530), tile_px=120, overlap_px=24, halo_px=9)
    vals = rng.normal(size=(len(plan.tiles), *plan.window)).astype(np.float32)
    vals[2, 30:40, 50:60] = np.nan  # a hole covered by other tiles too
    vals[0, :5, :5] = np.nan  # covered by tile 0 only
    w = feather(plan)
    whole = PlaneBlend(plan, ("a", "b"), dtype=np.float32, propagate_nan=("b",))
    band = PlaneBlend(plan, ("a", "b"), dtype=np.float32, propagate_nan=("b",))
    got = {"a": [], "b": []}
    for k, t in enumerate(plan.tiles):
        whole.add(t, w[k], {"a": vals[k], "b": vals[k]})
        band.add(t, w[k], {"a": vals[k], "b": vals[k]})
        nxt = plan.tiles[k + 1].valid[0] if k + 1 < len(plan.tiles) else plan.shape[0]
        r0 = band.done
        for name, v in band.take_rows(nxt).items():
            assert v.shape == (band.done - r0, 530)
            got[name].append(v)
    assert band.done == 700
    for name in ("a", "b"):
        np.testing.assert_array_equal(np.concatenate(got[name]), whole.result(name))
    # every whole page of the accumulators is back to zero (given back to the OS)
    per_page = PAGE // 4
    flat = band.common.ravel()
    whole_pages = flat[: flat.size // per_page * per_page]
    assert whole.common.any() and not whole_pages.any()
    assert not band.num["a"].ravel()[: flat.size // per_page * per_page].any()
