"""The neural fit: real networks trained through the mollifier layer, batched equals one by one,
bounds, divergence, and that training moves lambda away from its closed-form start."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.config import Settings, UncertaintySettings
from pipeline.estimate import linear_terms, local_least_squares
from pipeline.estimate.networks import FieldNet, RateNet
from pipeline.estimate.neural import fit_tiles
from pipeline.estimate.uncertainty import FieldNoise, member_data
from pipeline.physics import ChromatinModel
from pipeline.physics.observation import to_fields
from pipeline.simulate import simulate_case

PX = 0.02
BW = (0.1, 0.12)


def _fields(seed, shape=(48, 48), channels=2, kind="smooth", noise=0.02):
    case = simulate_case(kind=kind, channels=channels, noise=noise, shape=shape,
                         pixel_size_um=PX, seed=seed)
    roles = ("heterochromatin",) if channels == 1 else ("chromatin", "heterochromatin")
    return to_fields(case.image, roles, case.calibration)[0], case.lam


def _settings(**neural):
    return Settings(method="neural", device="cpu",
                    estimator={"delta_um": BW[0], "window_um": BW[1]},
                    uncertainty={"ensemble_size": 2},
                    neural={"pretrain_epochs": 4, "epochs": 4} | neural)


def _init(tiles):
    terms = linear_terms(tiles, ChromatinModel(), BW[0], PX)
    return local_least_squares(terms, BW[1], PX)[0]


@pytest.fixture(scope="module")
def tiles():
    return np.stack([_fields(s)[0] for s in (1, 2)])


def _fit(tiles, settings, seeds, **kw):
    return fit_tiles(tiles, ChromatinModel(), PX, settings, init_lambda=_init(tiles),
                     bandwidth=BW, noise=FieldNoise.gaussian([0.02, 0.02]), seeds=seeds,
                     device="cpu", **kw)


def test_batched_equals_one_by_one(tiles):
    s = _settings()
    both = _fit(tiles, s, [3, 7])
    for i, sd in enumerate((3, 7)):
        one = _fit(tiles[i : i + 1], s, [sd])
        np.testing.assert_allclose(one["mean"][0], both["mean"][i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(one["std"][0], both["std"][i], rtol=1e-3, atol=1e-5)
    other = _fit(tiles[:1], s, [4])  # the seed matters: another ensemble
    assert not np.allclose(other["std"][0], both["std"][0], equal_nan=True)


def test_bounds_progress_and_outputs(tiles):
    s = _settings(lr=0.5).model_copy(update={"estimator": _settings().estimator.model_copy(
        update={"lambda_min": 0.9, "lambda_max": 1.1})})
    seen = []
    out = _fit(tiles, s, [0, 1], progress=seen.append)
    m = out["mean"][np.isfinite(out["mean"])]
    assert m.size > 0 and m.min() >= 0.9 - 1e-6 and m.max() <= 1.1 + 1e-6
    assert out["mean"].shape == out["std"].shape == (2, 48, 48)
    assert [p["done"] for p in seen] == list(range(1, 9))
    d = out["diagnostics"]
    assert len(d) == 2 and d[0]["epochs"] == 8 and d[0]["device"] == "cpu"


def test_networks_have_layers_and_capacity_follows_delta():
    """The field is a feature grid read by an MLP (hidden layer of ``hidden`` units), coarser
    for a larger radius; the rate is an MLP on Fourier features, bounded."""
    y = torch.zeros(3, 2, 40, 40, dtype=torch.float64)
    fine = FieldNet(y, 2.0, [0, 1, 2], hidden=16)
    coarse = FieldNet(y, 8.0, [0, 1, 2], hidden=16)
    assert fine.w1.shape == (3, 16, 16) and fine.w2.shape == (3, 2, 16)
    n_fine = sum(p[0].numel() for p in fine.parameters())
    n_coarse = sum(p[0].numel() for p in coarse.parameters())
    assert n_fine > 4 * n_coarse
    assert fine().shape == (3, 2, 40, 40)
    rate = RateNet([0, 1, 2], (40, 40), PX, 0.2, 0.5, 2.0, dtype=torch.float64)
    rate.set_level(torch.tensor([0.6, 1.0, 1.9], dtype=torch.float64))
    lam = rate()
    assert lam.shape == (3, 40, 40)
    np.testing.assert_allclose(lam[:, 0, 0].detach().numpy(), [0.6, 1.0, 1.9], rtol=1e-6)
    with torch.no_grad():
        rate.w3.normal_(0, 50.0)
    lam = rate()
    assert float(lam.min()) >= 0.5 and float(lam.max()) <= 2.0 and float(lam.std()) > 0.01


def test_training_moves_lambda_and_trades_misfit_for_residual():
    """Through the mollifier layer in the training graph: the joint phase moves lambda away
    from where the warm start left it, lowers the PDE residual below its value at the start of
    the joint phase, and the discrepancy principle raised the residual weight from its start
    (0.1). A run with 0 joint epochs is the warm start alone. Break the gradient path (detach
    the field before the mollifier) and the residual no longer falls."""
    f, _ = _fields(3, shape=(48, 48), noise=0.03)
    tiles = f[None]
    warm = _fit(tiles, _settings(pretrain_epochs=20, epochs=0), [0])
    joint = _fit(tiles, _settings(pretrain_epochs=20, epochs=30), [0])
    d = joint["diagnostics"][0]
    moved = np.nanmean(np.abs(joint["mean"] - warm["mean"]))
    assert moved > 0.05 * np.nanstd(warm["mean"]), moved
    assert warm["diagnostics"][0]["residual"] == pytest.approx(1.0)
    assert d["residual"] < 0.9, d
    assert d["residual_weight"] > 0.1, d


def test_estimate_is_the_ensembles_mean_and_std_that_of_one_training(tiles, monkeypatch):
    """The estimate averages the E + 1 trainings (member 0 on the data, the members on its
    noise-resampled copies); the std is still that of one training: the members' spread and
    noise bias about member 0."""
    import pipeline.estimate.neural as neural

    seen = {}
    orig = neural.combine_std

    def spy(members, estimate, bias, **kw):
        seen["members"], seen["first"] = np.array(members), np.array(estimate)
        return orig(members, estimate, bias, **kw)

    monkeypatch.setattr(neural, "combine_std", spy)
    out = _fit(tiles, _settings(), [3, 7])
    m, first = seen["members"], seen["first"]
    assert m.shape[1] == 2
    np.testing.assert_allclose(out["mean"], (first + m.sum(axis=1)) / 3, rtol=1e-12)
    # not member 0's lambda; and the std was taken about member 0, not about the average
    # (were the average passed, it could not equal (average + members) / 3)
    assert np.nanmax(np.abs(out["mean"] - first)) > 1e-3


def test_residual_weight_never_falls_below_its_floor(tiles):
    """The discrepancy controller's weight is clamped from below after every update: with a
    floor above where the controller leaves it, the weight ends at or above the floor and the
    residual is lower for it. Remove the clamp and the weights end where the floorless run's
    do (below 5 here)."""
    free = _fit(tiles, _settings(pretrain_epochs=20, epochs=30, residual_weight_floor=0.0),
                [0, 1])
    held = _fit(tiles, _settings(pretrain_epochs=20, epochs=30, residual_weight_floor=5.0),
                [0, 1])
    for f, h in zip(free["diagnostics"], held["diagnostics"], strict=True):
        assert f["residual_weight"] < 5.0, f
        assert h["residual_weight"] >= 5.0 * (1 - 1e-6), h
        assert h["residual"] < f["residual"], (f, h)
    assert Settings().neural.residual_weight_floor == 0.01


def test_overflowing_tile_diverges_alone(tiles):
    """Fields x 1e13 overflow float32 (A ~ phi^3): that tile is flagged ``diverged``; the
    healthy tile of the same batch equals its fit alone."""
    s = _settings()
    batch = np.stack([tiles[0], tiles[1] * 1e13])
    with np.errstate(all="ignore"):
        both = _fit(batch, s, [3, 4])
    one = _fit(batch[:1], s, [3])
    d = both["diagnostics"]
    assert d[1]["diverged"] and not d[0]["diverged"]
    np.testing.assert_allclose(both["mean"][0], one["mean"][0], rtol=1e-5, atol=1e-6)


def test_member_data_is_antithetic():
    y = np.random.default_rng(0).normal(size=(2, 64, 64))
    m = member_data(y, FieldNoise.gaussian([0.1, 0.0]), 4, seed=1)
    assert m.shape == (4, 2, 64, 64)
    np.testing.assert_allclose(m.mean(axis=0), y, atol=1e-12)
    np.testing.assert_array_equal(m[:, 1], np.broadcast_to(y[1], (4, 64, 64)))  # sigma 0
    assert np.std(m[0, 0] - y[0]) == pytest.approx(0.1, rel=0.1)
    corr = member_data(y, FieldNoise.gaussian([0.1, 0.0], corr_px=1.5), 2, seed=1)
    z = corr[0, 0] - y[0]
    assert np.std(z) == pytest.approx(0.1, rel=0.15)
    lag1 = np.corrcoef(z[:, 1:].ravel(), z[:, :-1].ravel())[0, 1]
    assert lag1 > 0.6  # correlated noise is resampled correlated


def test_settings_validation():
    with pytest.raises(ValidationError, match="even"):
        UncertaintySettings(ensemble_size=3)
    assert Settings().method == "closed-form"


def test_bad_shapes():
    with pytest.raises(ValueError, match="N, C, H, W"):
        fit_tiles(np.zeros((2, 32, 32)), ChromatinModel(), PX, _settings(),
                  init_lambda=np.ones((2, 32, 32)), bandwidth=BW,
                  noise=FieldNoise.gaussian([0.02]), seeds=[0, 1])


def test_retry_keeps_the_pretraining_step(tiles, monkeypatch):
    """A retried tile (forced here: its first result is marked diverged) is refitted with a
    smaller step in the joint phase only: its pretraining brings the field as close to the data
    as the first attempt's did, instead of leaving it underfitted."""
    import pipeline.estimate.neural as neural

    real, calls = neural.fit_tiles, []

    def first_marked_diverged(*a, **kw):
        out = real(*a, **kw)
        calls.append(out)
        if len(calls) == 1:
            out["diagnostics"][0]["diverged"] = True
        return out

    monkeypatch.setattr(neural, "fit_tiles", first_marked_diverged)
    s = _settings(pretrain_epochs=40, epochs=10)
    res = neural.fit_tiles_guarded(tiles, ChromatinModel(), PX, s, _init(tiles), BW,
                                   FieldNoise.gaussian([0.02, 0.02]), [3, 7], None)
    assert len(calls) == 2
    d0, d1 = res["diagnostics"]
    assert d0["retried"] and d0["fallback"] == "retry" and not d1["retried"]
    first, again = calls[0]["diagnostics"][0]["data_start"], d0["data_start"]
    assert abs(again - first) < 0.01 * first, (first, again)
    assert d0["epochs"] == 40 + 20
