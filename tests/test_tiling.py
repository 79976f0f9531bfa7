"""Tile plans, feathered blending, and tiled == untiled on the closed-form path."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.estimate import estimate_closed_form
from pipeline.physics.chromatin import ChromatinModel
from pipeline.tiling import blend_tiles, extract_tiles, feather_weights, fit_plane, plan_tiles

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


def test_tiled_equals_untiled_closed_form():
    """Tolerance: both paths compute in float64 and store float32. With the halo derived from
    the operator (mollifier support + 3 sigma window), the only differences are FFT rounding
    (padded lengths differ per tile), ~1e-12 relative, far below the float32 step of the output
    (2.4e-7 at lambda ~ 2). Measured max |diff| = 2.4e-7 on 256^2; tolerance 2e-6 = ~8 float32
    steps at lambda <= 4. The identifiability masks must agree exactly."""
    from pipeline.simulate import simulate_case

    case = simulate_case(kind="lognormal", shape=(160, 160), channels=2, noise=0.01, seed=3)
    c = case.calibrated()
    fields = np.stack([c[1], 1 - c[0]])  # phi_h, phi_w (noisy)
    model = ChromatinModel()
    s = Settings(method="closed-form", estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"tile_px": 40, "overlap_px": 12})
    whole = estimate_closed_form(fields, model, 0.02, s.estimator)
    tiled = fit_plane(fields, model, 0.02, s)
    assert tiled["record"]["tiling"]["n_tiles"] > 4
    np.testing.assert_array_equal(tiled["identifiable"], whole.identifiable)
    ok = whole.identifiable
    np.testing.assert_allclose(tiled["mean"][ok], whole.lam[ok], rtol=0, atol=2e-6)


def _case_fields(shape=(120, 120), seed=5):
    from pipeline.simulate import simulate_case

    c = simulate_case(kind="lognormal", shape=shape, channels=2, noise=0.01, seed=seed).calibrated()
    return np.stack([c[1], 1 - c[0]])


def test_streamed_equals_one_batch_closed_form():
    """One tile per batch (the smallest stream) against every tile in one batch: the blend adds
    tiles in plan order either way, so only per-batch FFT rounding could differ (~1e-12)."""
    fields, model = _case_fields(), ChromatinModel()
    s = Settings(method="closed-form", estimator={"delta_um": 0.1, "window_um": 0.1},
                 run={"tile_px": 32, "overlap_px": 8})
    one = fit_plane(fields, model, 0.02, s, max_batch_px=10**9)
    streamed = fit_plane(fields, model, 0.02, s, max_batch_px=1)
    assert one["record"]["tiling"]["n_tiles"] > 4
    np.testing.assert_array_equal(streamed["identifiable"], one["identifiable"])
    np.testing.assert_allclose(streamed["mean"], one["mean"], rtol=1e-6, atol=0, equal_nan=True)
    assert np.isnan(streamed["std"]).all() and np.isnan(one["std"]).all()
    assert [r["tile"] for r in streamed["tiles"]] == [r["tile"] for r in one["tiles"]]


def test_streamed_equals_one_batch_neural():
    """The neural fit gets tile n's seed (settings.seed + n) whatever its batch, so streaming
    one tile at a time equals fitting all tiles at once up to float32 rounding."""
    pytest.importorskip("torch")
    fields, model = _case_fields((72, 72), seed=2), ChromatinModel()
    s = Settings(method="neural", device="cpu", seed=7,
                 estimator={"delta_um": 0.06, "window_um": 0.06},
                 run={"tile_px": 24, "overlap_px": 6}, neural={"epochs": 3})
    one = fit_plane(fields, model, 0.02, s, max_batch_px=10**9)
    streamed = fit_plane(fields, model, 0.02, s, max_batch_px=1)
    assert one["record"]["tiling"]["n_tiles"] > 2
    np.testing.assert_array_equal(streamed["identifiable"], one["identifiable"])
    ok = one["identifiable"]
    assert ok.any()
    np.testing.assert_allclose(streamed["mean"][ok], one["mean"][ok], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(streamed["std"][ok], one["std"][ok], rtol=1e-3, atol=1e-5)


def test_blend_accumulator_handles_nan_after_finite_tiles():
    """A map that turns NaN only in a later tile gets its own weight sum from then on."""
    plan = plan_tiles((40, 40), tile_px=16, overlap_px=8, halo_px=2)
    vals = extract_tiles(np.arange(1600.0).reshape(40, 40), plan)
    vals[-1, :, :] = np.nan
    ref = np.arange(1600.0).reshape(40, 40)
    out = blend_tiles(vals, plan)
    assert np.isnan(out[-1, -1])  # only the last tile covers the corner
    np.testing.assert_allclose(out[np.isfinite(out)], ref[np.isfinite(out)], atol=1e-9)


# ----------------------------------------------------------------------------- numerical guards
def _neural_settings(**neural):
    return Settings(method="neural", device="cpu", seed=7,
                    estimator={"delta_um": 0.06, "window_um": 0.06},
                    run={"tile_px": 24, "overlap_px": 6},
                    neural={"epochs": 2, "ensemble_size": 2} | neural)


def _assert_no_nonfinite_identifiable(res, *, std=True):
    ok = res["identifiable"]
    assert ok.any()
    assert np.isfinite(res["mean"][ok]).all()
    assert np.isnan(res["mean"][~ok]).all()
    if std:
        assert np.isfinite(res["std"][ok]).all()


def test_overflowing_tile_is_retried_in_float64_and_flagged():
    """A corner block x 1e13 overflows float32 in the neural fit (A ~ phi^3) but not float64.
    Only the tile whose window holds it diverges; it is retried (float64, safer settings, same
    seed) and reports the retry; every other tile is untouched; nothing non-finite is
    identifiable. Without the guard that tile's mean is NaN inside the identifiable mask."""
    pytest.importorskip("torch")
    fields, model = _case_fields((96, 96), seed=2), ChromatinModel()
    fields[:, :8, :8] *= 1e13
    res = fit_plane(fields, model, 0.02, _neural_settings())
    plan_windows = {r["tile"]: r for r in res["tiles"]}
    assert len(plan_windows) > 4
    hit = [r["tile"] for r in res["tiles"] if r["diverged"]]
    assert hit == [0]
    assert res["tiles"][0]["retried"] and res["tiles"][0]["fallback"] == "retry"
    assert all(not r["retried"] and r["fallback"] == "none" for r in res["tiles"][1:])
    assert res["record"]["tiles_diverged"] == res["record"]["tiles_fallback_retry"] == 1
    _assert_no_nonfinite_identifiable(res)
    assert res["identifiable"][:24, :24].any()  # the retried tile does report values


def test_tile_diverging_twice_falls_back_to_closed_form():
    """A learnable field with an absurd step (lr_field 1e6, x0.1 on retry) diverges on both
    attempts in every tile: each falls back to its closed-form λ with NaN std, so the plane
    equals the closed-form fit exactly, and every row says so."""
    pytest.importorskip("torch")
    fields, model = _case_fields((72, 72), seed=2), ChromatinModel()
    s = _neural_settings(field_network="grid", lr_field=1e6)
    res = fit_plane(fields, model, 0.02, s)
    cf = fit_plane(fields, model, 0.02, s.model_copy(update={"method": "closed-form"}))
    assert len(res["tiles"]) > 2
    for r in res["tiles"]:
        assert r["diverged"] and r["retried"] and r["fallback"] == "closed-form"
    assert res["record"]["tiles_fallback_closed_form"] == len(res["tiles"])
    np.testing.assert_array_equal(res["identifiable"], cf["identifiable"])
    np.testing.assert_array_equal(res["mean"], cf["mean"])
    assert np.isnan(res["std"]).all()
    _assert_no_nonfinite_identifiable(res, std=False)


def test_retry_with_a_small_enough_step_recovers():
    """Same absurd step, but the retry scales it by 1e-9: the retry converges and is used."""
    pytest.importorskip("torch")
    fields, model = _case_fields((72, 72), seed=2), ChromatinModel()
    res = fit_plane(fields, model, 0.02, _neural_settings(field_network="grid", lr_field=1e6,
                                                          retry_lr_factor=1e-9))
    for r in res["tiles"]:
        assert r["diverged"] and r["retried"] and r["fallback"] == "retry"
        assert r["residual"] < 10 and r["epochs"] == 4  # the retry's own diagnostics
    _assert_no_nonfinite_identifiable(res)


def test_nonfinite_closed_form_is_flagged_and_never_identifiable():
    """A value of 1e200 makes A^2 overflow in every tile whose window holds it: those tiles
    count their non-finite pixels, which are not identifiable; the others count none. A flat
    quadrant with phi_e = 0 (so A = 0) is a degenerate local system, flagged as such."""
    fields, model = _case_fields((96, 96), seed=2), ChromatinModel()
    fields[:, 90, 90] = 1e200
    fields[0, :60, :60], fields[1, :60, :60] = 0.3, 0.7  # A = 2 phi_e = 0: no information
    s = Settings(method="closed-form", estimator={"delta_um": 0.06, "window_um": 0.06},
                 run={"tile_px": 24, "overlap_px": 6})
    with np.errstate(over="ignore", invalid="ignore"):
        res = fit_plane(fields, model, 0.02, s)
    rows = res["tiles"]
    bad = [r["tile"] for r in rows if r["cf_nonfinite_px"] > 0]
    assert bad and rows[-1]["tile"] in bad and rows[0]["tile"] not in bad
    assert res["record"]["cf_nonfinite_px"] == sum(r["cf_nonfinite_px"] for r in rows) > 0
    assert not res["identifiable"][80:, 80:].any()
    _assert_no_nonfinite_identifiable(res, std=False)
    assert rows[0]["cf_degenerate"] and rows[0]["fraction_identifiable"] == 0
    assert not rows[-1]["cf_degenerate"]  # non-finite, not empty: the other flag
    assert not any(r["cf_degenerate"] for r in rows if r["fraction_identifiable"] > 0)
    assert all(r["fallback"] == "none" and not r["diverged"] for r in rows)


def test_neural_keeps_the_planes_identifiable_mask():
    """The neural fit masks with the plane's identifiability (as the closed form), not each
    tile's own per-tile thresholds: no identifiable pixel is dropped. With the tiles' masks
    this case (a step, 32 px tiles) lost 8 pixels (56 in a flow run at 30 epochs)."""
    pytest.importorskip("torch")
    from pipeline.physics.observation import to_fields
    from pipeline.simulate import simulate_case

    case = simulate_case(kind="step", channels=1, noise=0.02, shape=(96, 96), pixel_size_um=0.02,
                         seed=4)
    fields = to_fields(case.image, ("heterochromatin",), case.calibration)[0]
    base = dict(device="cpu", estimator={"delta_um": 0.1, "window_um": 0.1},
                run={"tile_px": 32, "overlap_px": 8}, neural={"epochs": 2})
    nn = fit_plane(fields, ChromatinModel(), 0.02, Settings(method="neural", **base))
    cf = fit_plane(fields, ChromatinModel(), 0.02, Settings(method="closed-form", **base))
    assert sum(r["dropped_px"] for r in nn["tiles"]) == 0
    np.testing.assert_array_equal(nn["identifiable"], cf["identifiable"])
    _assert_no_nonfinite_identifiable(nn)
