"""Automatic bandwidths on noise that is not white, nuclei in the dark, and grid edges (the
noise model itself: test_noise.py)."""

import logging

import numpy as np
import pytest
from scipy import ndimage as ndi

from pipeline.estimate.bandwidth import (
    DEFAULT_DELTAS_PX,
    candidate_grid,
    estimate_noise,
    select_bandwidth,
)
from pipeline.estimate.closed_form import linear_terms, local_least_squares
from pipeline.metrics import interior_r
from pipeline.physics import ChromatinModel
from pipeline.simulate import render_image, simulate_case

PX = 0.02
SEED = 11  # a tuning seed of the bandwidth rule


def _storm(n=192, precision_px=1.0, n_loc=10.0):
    """STORM-like: Poisson localisations from phi_h, jittered and rendered at the precision."""
    case = simulate_case(kind="smooth", channels=1, noise=0.0, shape=(n, n), seed=SEED)
    rng = np.random.default_rng(SEED)
    density = ndi.gaussian_filter(case.phi_h, precision_px, mode="wrap")
    counts = rng.poisson(n_loc * density).astype(float)
    rendered = ndi.gaussian_filter(counts, precision_px, mode="wrap") / n_loc
    return rendered[None], case.lam


def _r(fields, truth, d_px, s_px):
    terms = linear_terms(fields, ChromatinModel(), d_px * PX, PX)
    lam, _ = local_least_squares(terms, s_px * PX, PX)
    return interior_r(lam, truth)


def test_storm_like_choice_is_not_the_smallest_window():
    fields, truth = _storm()
    model = ChromatinModel()
    grid = {"deltas_px": (10, 14), "windows_px": (2.5, 5.5, 10, 15), "extend": False}
    # the old split: white z at the finest-scale level leaves the halves' noise correlated,
    # so every candidate looks reliable; it took the smallest window until candidates at a
    # bound of lambda were excluded, and it still takes a smaller one than the noise model
    from skimage.restoration import estimate_sigma
    white = select_bandwidth(fields, model, PX, noise_sigma=[estimate_sigma(fields[0])], **grid)
    assert all(r["reliability"] > 0.99 for r in white.table)
    new = select_bandwidth(fields, model, PX, **grid)
    assert new.noise[0]["corr_length_px"] == pytest.approx(1.0, abs=0.2)
    assert new.window_um > 2.5 * PX and new.window_um > white.window_um
    r_new = _r(fields, truth, new.delta_um / PX, new.window_um / PX)
    r_best = max(_r(fields, truth, d, s) for d in (10, 14) for s in (10, 15))
    assert r_new > r_best - 0.03, (r_new, r_best)
    assert r_new > _r(fields, truth, white.delta_um / PX, white.window_um / PX) + 0.2


def _nucleus(n=192):
    case = simulate_case(kind="smooth", channels=1, noise=0.0, shape=(n, n), seed=SEED)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = (yy / (0.44 * n)) ** 2 + (xx / (0.4 * n)) ** 2 <= 1
    soft = ndi.gaussian_filter(inside.astype(float), 2.0)
    image, cal = render_image(case.phi_h * soft, 0.3, channels=1, noise=0.02, rng=SEED)
    return ((image.astype(float) - cal[0].offset) * cal[0].scale), inside


def test_foreground_changes_the_evaluated_pixels():
    fields, inside = _nucleus()
    model = ChromatinModel()
    grid = {"deltas_px": (5, 10), "windows_px": (4, 10), "extend": False}
    everywhere = select_bandwidth(fields, model, PX, **grid)
    nucleus = select_bandwidth(fields, model, PX, foreground=inside, **grid)
    assert nucleus.evaluated_px < everywhere.evaluated_px
    assert nucleus.foreground.startswith("foreground eroded by")
    # the dark background (read noise only) pulled the whole-image noise level down
    assert nucleus.noise_sigma[0] > 1.3 * everywhere.noise_sigma[0]
    assert nucleus.noise_sigma[0] == pytest.approx(0.02, rel=0.25)
    with pytest.raises(ValueError, match="foreground"):
        select_bandwidth(fields, model, PX, foreground=inside[:-1], **grid)
    # the estimator restricted to the nucleus: other candidate maps, other statistics
    weighted = select_bandwidth(fields, model, PX, foreground=inside, foreground_weight=True,
                                **grid)
    assert [t["reliability"] for t in weighted.table] != [t["reliability"]
                                                          for t in nucleus.table]


def test_white_noise_keeps_the_split_of_before():
    """On camera (white) noise the split is the one of the white-noise rule, draw for draw."""
    case = simulate_case(kind="lognormal", channels=2, noise=0.02, shape=(128, 128), seed=SEED)
    fields = np.stack([(im.astype(float) - c.offset) * c.scale
                       for im, c in zip(case.image, case.calibration, strict=True)])
    grid = {"deltas_px": (5, 10), "windows_px": (4, 10), "extend": False}
    new = select_bandwidth(fields, ChromatinModel(), PX, **grid)
    assert all(m["corr_length_px"] == 0 for m in new.noise)
    old = select_bandwidth(fields, ChromatinModel(), PX, noise_sigma=estimate_noise(fields),
                           **grid)
    assert new.table == old.table


def test_grid_edge_is_extended_and_recorded(caplog):
    case = simulate_case(kind="smooth", channels=1, noise=0.05, shape=(192, 192), seed=SEED)
    fields = ((case.image.astype(float) - case.calibration[0].offset)
              * case.calibration[0].scale)
    model = ChromatinModel()
    # a grid far too small for this noise: the choice sits at its top edge
    with caplog.at_level(logging.WARNING, logger="pipeline.estimate.bandwidth"):
        fixed = select_bandwidth(fields, model, PX, deltas_px=(10,), windows_px=(2, 2.5),
                                 extend=False)
    assert fixed.at_grid_edge and "largest" in fixed.grid_message
    assert "largest" in caplog.text
    grown = select_bandwidth(fields, model, PX, deltas_px=(10,), windows_px=(2, 2.5))
    assert grown.windows_px == pytest.approx([2, 2.5, 3.125, 3.906], abs=1e-3)
    assert "extended" in grown.grid_message
    assert grown.window_um > 2.5 * PX
    assert grown.deltas_px == [10.0]  # a fixed delta is never extended


def test_grid_follows_the_pixel_size():
    assert candidate_grid(0.02)[0] == DEFAULT_DELTAS_PX
    d, s = candidate_grid(0.1)  # 0.1 um pixels: scaled up to span >= 2.5 px
    assert d[0] == 2.5 and d[-1] / d[0] == pytest.approx(6.0)
    assert s[0] >= 1.5
    d, _ = candidate_grid(0.01)  # smaller pixels: the same micrometres
    assert d == pytest.approx([2 * v for v in DEFAULT_DELTAS_PX])


@pytest.mark.parametrize("name, seed, r_min", [
    ("storm_lognormal_1ch_sparse", 37, 0.9),  # was r -0.16: a predicted correlation of 4.7
    ("nuc_storm_lognormal_2ch", 23, 0.3),  # was r -0.05: the "most reliable" fallback
])
def test_candidates_whose_halves_sit_at_a_bound_are_not_chosen(name, seed, r_min):
    """Rendered localisations (stress specs, tuning seeds): at small bandwidths the noise-split
    halves' lambda sits at a bound almost everywhere, and their correlation is that of the
    bounds. Such candidates were chosen. With the nuclei, as the run's fit chooses."""
    from benchmarks.stress import evaluation_region, fit
    from pipeline.config import Settings
    from pipeline.estimate.bandwidth import choose_bandwidths
    from pipeline.estimate.bandwidth_split import MAX_AT_BOUND
    from pipeline.physics.observation import to_fields
    from pipeline.process import nuclei_foreground
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == name)
    case = make_stress_case(spec, seed=seed)
    px, settings = case.pixel_size_um, Settings()
    fields = to_fields(case.image, case.channel_names, case.calibration_given)[0]
    fg = nuclei_foreground(fields, px, settings)
    delta, window, ev = choose_bandwidths(fields, ChromatinModel(), px, settings.estimator,
                                          foreground=fg, foreground_weight=fg is not None)
    assert max(r["at_bound"] for r in ev["table"]) > 0.5  # the trap is there
    chosen = min(ev["table"], key=lambda r: abs(r["delta_px"] - delta / px)
                 + abs(r["window_px"] - window / px))
    assert chosen["at_bound"] <= MAX_AT_BOUND
    # and through the fit the run uses (the same choice, the nuclei as the weight)
    info: dict = {}
    lam, _, ident = fit(case.image, case, "closed-form", info)
    assert info["delta_um"] == pytest.approx(delta) and info["window_um"] == pytest.approx(window)
    assert interior_r(lam, case.lam, evaluation_region(case) & ident, border_px=0) > r_min


def test_two_channel_storm_keeps_its_contrast():
    """Two-channel STORM rendering (stress spec ``storm_smooth_2ch_px15``, tuning seed 37): the
    previous rule (largest predicted correlation, reference reliability 0.8) took the grid's
    widest window, s = 0.44 um (29 px), where the map keeps a fifth of lambda's contrast and
    the 90 % interval held the truth on 0.38 of the pixels. The squared-error rule takes a
    narrower one."""
    from benchmarks.stress import evaluation_region, fit, score
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "storm_smooth_2ch_px15")
    case = make_stress_case(spec, seed=37)
    info: dict = {}
    mean, std, ident = fit(case.image, case, "closed-form", info)
    assert info["window_um"] < 0.4  # the grid's widest: 0.44 um
    sc = score(mean.astype(float), std.astype(float), ident, case.lam, evaluation_region(case))
    assert sc["r"] > 0.93 and sc["coverage"] > 0.7, sc


def test_a_predicted_correlation_never_exceeds_one():
    """The signal agreement is a correlation: an estimate above 1 (a candidate whose signal
    variance is tiny) is capped, and cannot outscore a well-estimated candidate."""
    from pipeline.estimate.bandwidth_split import _choose

    rng = np.random.default_rng(0)
    base = rng.normal(size=4000)
    good = {"delta_px": 10.0, "window_px": 10.0, "reliability": 0.95, "at_bound": 0.0,
            "a": base, "b": base + 0.1 * rng.normal(size=4000)}
    tiny = {"delta_px": 5.0, "window_px": 5.0, "reliability": 0.3, "at_bound": 0.0,
            "a": 1e-3 * base + 1e-3 * rng.normal(size=4000),
            "b": 1e-3 * base - 1e-3 * rng.normal(size=4000)}
    for c in (good, tiny):
        c["signal_var"] = float(np.mean(c["a"] * c["b"]))
        c["noise_var"] = float(np.mean((c["a"] - c["b"]) ** 2) / 4)
        c["level_bias"] = 0.0
    tiny["signal_var"] = 1e-9  # an underestimated signal variance: agreement far above 1
    best, _, _ = _choose([good, tiny], 0.8)
    assert best is good
    assert tiny["predicted_r"] <= np.sqrt(tiny["reliability"]) + 1e-12


def test_predicted_squared_error_is_the_error_against_the_reference():
    """The rule's figure, from the two halves alone, equals |m - m_ref|^2 + the full data's
    noise variance, which a user could only compute with the noise-free maps: two candidates
    (one smoother, biased; one noisier) whose halves carry independent noise of known size."""
    from pipeline.estimate.bandwidth_split import _choose

    rng = np.random.default_rng(4)
    n = 200_000
    truth = rng.normal(size=n)
    cands, expected = [], {}
    for name, (gain, sd, rel) in {"sharp": (1.0, 0.6, 0.9), "smooth": (0.6, 0.2, 0.95)}.items():
        m = gain * truth
        e, z = sd * rng.normal(size=n), sd * rng.normal(size=n)  # image noise; split draw
        a, b = m + e + z, m + e - z
        a, b = a - a.mean(), b - b.mean()
        cands.append({"name": name, "delta_px": 5.0, "window_px": 5.0 if name == "sharp" else 10.0,
                      "reliability": rel, "at_bound": 0.0, "a": a, "b": b,
                      "signal_var": float(np.mean(a * b)),
                      "noise_var": float(np.mean((a - b) ** 2) / 4), "level_bias": 0.0})
        expected[name] = (m, sd**2)
    best, _, ref = _choose(cands, 0.5)
    assert ref["window_px"] == 5.0  # the sharp map is the reference
    m_ref = expected["sharp"][0]
    for c in cands:
        m, noise = expected[c["name"]]
        assert c["predicted_mse"] == pytest.approx(np.mean((m - m_ref) ** 2) + noise, abs=0.01)
    # 0.16 bias + 0.04 noise beats 0.36 noise
    assert best["name"] == "smooth"


def test_the_noise_bias_of_the_level_is_estimated_and_counted():
    """lambda is nonlinear in the data, so noise shifts its level, which the centred statistics
    do not see. A quadratic estimator ``g(y) = y + beta y^2`` on a flat truth: the data's map is
    ``beta sigma^2`` off on average and the halves (twice the variance) ``2 beta sigma^2``; the
    statistics recover ``beta sigma^2``, and the rule adds its square."""
    from pipeline.estimate.bandwidth_split import _choose, _statistics

    rng = np.random.default_rng(7)
    n, sigma, beta = 400_000, 0.3, 2.0
    truth = 0.5 * rng.normal(size=n)
    e, z = sigma * rng.normal(size=n), sigma * rng.normal(size=n)
    maps = {}
    for name, gain in (("biased", beta), ("linear", 0.0)):
        def g(y, k=gain):  # noise bias k * variance
            return y + k * (y - truth) ** 2

        maps[name] = {"name": name, "delta_px": 5.0, "window_px": 5.0 if name == "biased"
                      else 10.0, "l1": g(truth + e + z), "l2": g(truth + e - z),
                      "l0": g(truth + e)}
    cands = list(maps.values())
    _statistics(cands, np.ones(n, bool), (-np.inf, np.inf))
    assert maps["biased"]["level_bias"] == pytest.approx(beta * sigma**2, rel=0.05)
    assert abs(maps["linear"]["level_bias"]) < 1e-3
    for c in cands:
        c["reliability"] = 0.9
    unlevelled = [dict(c, level_bias=0.0) for c in cands]
    _choose(cands, 0.5)
    _choose(unlevelled, 0.5)
    added = cands[0]["predicted_mse"] - unlevelled[0]["predicted_mse"]
    assert added == pytest.approx((beta * sigma**2) ** 2, rel=0.1)


def test_a_storm_nucleus_is_not_given_a_noise_biased_window():
    """The two-channel STORM nucleus of the stress suite at tuning seed 37: without the level
    term the rule took delta 8.3 px, whose map is shifted by noise (r 0.53, rmse 0.81; 0.77
    and 0.35 with it, best fixed 0.84)."""
    from pipeline.calibration import calibrate_plane
    from pipeline.config import Settings
    from pipeline.estimate import fit_plane
    from pipeline.process import nuclei_foreground
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "nuc_storm_lognormal_2ch")
    case = make_stress_case(spec, 37)
    px = case.pixel_size_um
    settings = Settings(method="closed-form", calibration=case.calibration_given)
    fields, _ = calibrate_plane(case.image, case.channel_names, settings, px)
    fg = nuclei_foreground(fields, px, settings)
    out = fit_plane(fields, ChromatinModel(), px, settings, foreground=fg)
    dist = ndi.distance_transform_edt(np.pad(case.foreground, 1))[1:-1, 1:-1] * px
    ok = (dist >= 1.0) & out.identifiable
    err = (out.mean - case.lam)[ok]
    assert np.corrcoef(out.mean[ok], case.lam[ok])[0, 1] > 0.7
    assert np.sqrt(np.mean(err**2)) < 0.5


def test_with_no_reliable_candidate_the_rule_still_weighs_the_error():
    """When no candidate reaches the reference reliability (every one negative here: the
    two-channel STORM nucleus at retired test seed 8634, whose true λ barely varies), the most
    reliable candidate is the reference of the same rule. Taking that candidate itself chose a
    4.5 px window of noise (rmse 0.51, coverage 1.00); the rule's flatter map had rmse 0.32
    and coverage 0.89, and since the fields are no longer clipped rmse 0.21 with an interval
    twice the error (coverage 1.00, std/rmse 2.1: wide on a noise-dominated plane, never
    narrow, so only the lower bound is asserted)."""
    from benchmarks.stress import run_case
    from pipeline.simulate.stress import RETIRED_TEST_SEEDS, STRESS_SPECS

    assert 8634 in RETIRED_TEST_SEEDS  # tuning data now
    spec = next(s for s in STRESS_SPECS if s.name == "nuc_storm_lognormal_2ch")
    row = run_case(spec, 8634, "closed-form", sweep=False)
    assert row["window_px"] > 9 and row["rmse"] < 0.3
    assert row["coverage"] >= 0.8
    assert row["tiles"] >= 1 and row["tiles_retried"] == row["tiles_fallback_closed_form"] == 0



def test_offline_rule_evaluator_reproduces_the_product():
    """``benchmarks/bandwidth_rules.py`` chose the rule offline from the split's second
    moments: on a case where its evaluation mask is the product's (no delta extension), its
    copy of the rule and edge extension picks what ``choose_bandwidths`` picks."""
    from benchmarks.bandwidth_rules import collect_case, rule_risk, simulate
    from pipeline.config import Settings
    from pipeline.estimate.bandwidth import REFERENCE_RELIABILITY, choose_bandwidths
    from pipeline.physics.observation import to_fields
    from pipeline.process import nuclei_foreground
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "cam_smooth_1ch")
    c = collect_case(spec, 11)
    assert np.isfinite(c["r"]).sum() > 40
    i = simulate(c, rule_risk, ref_rel=REFERENCE_RELIABILITY)
    case = make_stress_case(spec, 11)
    fields = to_fields(case.image, case.channel_names, case.calibration_given)[0]
    fg = nuclei_foreground(fields, case.pixel_size_um, Settings())
    delta, window, _ = choose_bandwidths(fields, ChromatinModel(), case.pixel_size_um,
                                         Settings().estimator, foreground=fg,
                                         foreground_weight=fg is not None)
    px = case.pixel_size_um
    assert (c["delta"][i], c["window"][i]) == pytest.approx((delta / px, window / px))


def test_extrapolated_reference_removes_a_second_order_bias():
    """The offline rule's extrapolated reference (``benchmarks/bandwidth_rules.py``): on maps
    that follow ``T + A delta^2 + B s^2`` exactly, its weights give back ``T``; along the
    window alone the delta part stays."""
    from benchmarks.bandwidth_rules import extrapolated_reference

    rng = np.random.default_rng(0)
    t, a, b = rng.normal(size=(3, 50))
    d, s = np.meshgrid([3.0, 5.0, 7.0], [2.5, 4.0, 5.5], indexing="ij")
    c = {"delta": d.ravel(), "window": s.ravel(), "r": np.zeros(d.size)}
    maps = t + a * c["delta"][:, None] ** 2 + b * c["window"][:, None] ** 2
    ref = 7  # delta 7, s 4: neighbours up in s, down in delta
    judged = list(range(d.size))
    both = extrapolated_reference(c, judged, ref, "both")
    np.testing.assert_allclose(both @ maps, t, atol=1e-9)
    window = extrapolated_reference(c, judged, ref, "window")
    np.testing.assert_allclose(window @ maps, t + a * 49.0, atol=1e-9)


def test_a_rendering_at_10_nm_pixels_is_not_given_the_smallest_window():
    """STORM rendered at 10 nm pixels with a precision of 20 nm (extra stress design
    ``storm_smooth_1ch_px10``, tuning seed 11): the rendering's noise is correlated over 2 px,
    wider than the noise model's band sees at full resolution, so it looked 70 times too
    small and the rule took the smallest window (s 5 px, r 0.715; best fixed 0.962). Fitted
    on binned pixels, the noise is measured and the window is wide (s 15 px, r 0.941)."""
    from benchmarks.stress import evaluation_region, fit, score
    from pipeline.simulate.stress import EXTRA_SPECS, make_stress_case

    spec = next(s for s in EXTRA_SPECS if s.name == "storm_smooth_1ch_px10")
    case = make_stress_case(spec, seed=11)
    info: dict = {}
    mean, std, ident = fit(case.image, case, "closed-form", info)
    assert info["window_um"] / case.pixel_size_um >= 10
    sc = score(mean.astype(float), std.astype(float), ident, case.lam, evaluation_region(case))
    assert sc["r"] > 0.9 and sc["coverage"] > 0.8, sc
