"""Observation models (docs/science.md §2): calibration and the two channel models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import Calibration
from pipeline.physics.observation import auto_calibration, to_fields

PHI_MAX = 0.7


def _planes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(100.0, 4000.0, size=(n, 24, 20))


@pytest.mark.parametrize(("role", "top"), [("chromatin", 1.0), ("heterochromatin", PHI_MAX)])
def test_auto_calibration_maps_percentiles(role: str, top: float) -> None:
    plane = _planes(1)[0]
    cal = auto_calibration(plane, role, phi_max=PHI_MAX)
    lo, hi = np.percentile(plane, [0.5, 99.5])
    assert (lo - cal.offset) * cal.scale == pytest.approx(0.0, abs=1e-12)
    assert (hi - cal.offset) * cal.scale == pytest.approx(top)


def test_auto_calibration_ignores_nan_and_refuses_flat() -> None:
    plane = _planes(1)[0]
    with_nan = plane.copy()
    with_nan[0, :5] = np.nan
    assert auto_calibration(with_nan, "chromatin").scale > 0
    with pytest.raises(ValueError, match="constant.*--calibration"):
        auto_calibration(np.full((8, 8), 7.0), "heterochromatin")
    with pytest.raises(ValueError, match=r"\(Y, X\)"):
        auto_calibration(np.zeros((2, 8, 8)), "chromatin")
    with pytest.raises(ValueError, match="role"):
        auto_calibration(plane, "dna")  # type: ignore[arg-type]


def test_single_channel_model() -> None:
    planes = _planes(1)
    fields, record = to_fields(planes, ("heterochromatin",), "auto", phi_max=PHI_MAX)
    assert fields.shape == (2, 24, 20) and fields.dtype == np.float64
    assert fields[0].min() == 0.0 and fields[0].max() == pytest.approx(PHI_MAX)
    np.testing.assert_array_equal(fields[1], 1 - PHI_MAX)
    assert record["model"] == "single-channel"
    assert record["channels"][0]["role"] == "heterochromatin"
    assert record["channels"][0]["source"] == "auto"
    assert record["assumption"].startswith("absolute λ rests on auto-calibration: ")
    json.dumps(record)


def test_two_channel_model_constraints() -> None:
    planes = _planes(2, seed=1)
    fields, record = to_fields(planes, ("chromatin", "heterochromatin"), "auto", phi_max=PHI_MAX)
    phi_h, phi_w = fields
    c = 1 - phi_w
    assert record["model"] == "two-channel"
    assert (c >= 0).all() and (c <= 1).all()
    assert (phi_h >= 0).all() and (phi_h <= c + 1e-15).all()
    assert [ch["role"] for ch in record["channels"]] == ["chromatin", "heterochromatin"]
    json.dumps(record)


def test_channel_order_follows_roles() -> None:
    planes = _planes(2, seed=2)
    a, _ = to_fields(planes, ("chromatin", "heterochromatin"), "auto")
    b, _ = to_fields(planes[::-1], ("heterochromatin", "chromatin"), "auto")
    np.testing.assert_array_equal(a, b)


def test_user_calibration_exact_values() -> None:
    chrom = np.array([[[0.0, 100.0], [200.0, 300.0]]])
    het = np.array([[[50.0, 50.0], [500.0, 10.0]]])
    cals = (Calibration(offset=0.0, scale=1 / 200), Calibration(offset=10.0, scale=1 / 400))
    fields, record = to_fields(np.concatenate([chrom, het]), ("chromatin", "heterochromatin"), cals)
    c = np.array([[0.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(fields[1], 1 - c)
    np.testing.assert_allclose(fields[0], np.minimum([[0.1, 0.1], [1.225, 0.0]], c))
    assert record["channels"][1] == {
        "index": 1,
        "role": "heterochromatin",
        "offset": 10.0,
        "scale": 1 / 400,
        "source": "user",
    }
    assert "assumption" not in record


def test_user_calibration_single_channel_clips() -> None:
    img = np.array([[[-100.0, 0.0, 100.0, 1000.0]]])
    fields, _ = to_fields(img, ("heterochromatin",), (Calibration(offset=0.0, scale=0.005),))
    np.testing.assert_allclose(fields[0], [[0.0, 0.0, 0.5, PHI_MAX]])


def test_dask_input_matches_numpy() -> None:
    da = pytest.importorskip("dask.array")
    planes = _planes(2, seed=4)
    a, _ = to_fields(planes, ("chromatin", "heterochromatin"), "auto")
    b, _ = to_fields(
        da.from_array(planes, chunks=(1, 8, 8)), ("chromatin", "heterochromatin"), "auto"
    )
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("n", "roles", "calibration", "match"),
    [
        (2, ("heterochromatin",), "auto", "1 channel role"),
        (1, ("chromatin",), "auto", "no observation model"),
        (2, ("chromatin", "chromatin"), "auto", "no observation model"),
        (
            2,
            ("chromatin", "heterochromatin"),
            (Calibration(offset=0, scale=1),),
            "calibration pair",
        ),
        (1, ("heterochromatin",), "manual", "'auto'"),
    ],
)
def test_mismatches_raise(n: int, roles: tuple, calibration, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        to_fields(_planes(n), roles, calibration)


def test_bad_shapes_and_phi_max() -> None:
    with pytest.raises(ValueError, match=r"\(C, Y, X\)"):
        to_fields(np.zeros((8, 8)), ("heterochromatin",), "auto")
    with pytest.raises(ValueError, match="phi_max"):
        to_fields(_planes(1), ("heterochromatin",), "auto", phi_max=1.2)


def test_float32_fields_are_the_float64_fields_rounded(monkeypatch) -> None:
    """``dtype=float32`` is computed in float64 a block of rows at a time and rounded once."""
    import pipeline.physics.observation as obs

    monkeypatch.setattr(obs, "_BLOCK_PX", 100)  # many blocks of a 37 x 53 plane
    rng = np.random.default_rng(0)
    img = rng.integers(80, 4000, size=(2, 37, 53)).astype(np.uint16)
    for roles, cal in ((("chromatin", "heterochromatin"), "auto"),
                       (("heterochromatin", "chromatin"), ((90, 1 / 3000), (100, 1 / 5000))),
                       (("heterochromatin",), ((85, 1 / 2500),))):
        planes = img[: len(roles)]
        f64, rec64 = obs.to_fields(planes, roles, cal)
        f32, rec32 = obs.to_fields(planes, roles, cal, dtype=np.float32)
        assert f64.dtype == np.float64 and f32.dtype == np.float32
        assert np.array_equal(f32, f64.astype(np.float32)) and rec32 == rec64


def test_unclipped_fields_keep_the_noise_mean() -> None:
    """Near a bound, clipping noisy fractions moves their mean (here phi_h = 0.03 under noise
    of 0.05: clipped at 0 its mean rises to about 0.04); the fit's fields are not clipped, so
    the mean stays, and calibrate_plane (the run's calibration) gives those."""
    from pipeline.calibration import calibrate_plane
    from pipeline.config import Settings

    rng = np.random.default_rng(0)
    het = 100 + (0.03 + 0.05 * rng.standard_normal((200, 200))) / 0.001
    chrom = 100 + (0.5 + 0.05 * rng.standard_normal((200, 200))) / 0.001
    img = np.stack([chrom, het])
    cals = (Calibration(offset=100, scale=0.001),) * 2
    roles = ("chromatin", "heterochromatin")
    clipped = to_fields(img, roles, cals)[0]
    free = to_fields(img, roles, cals, clip=False)[0]
    assert clipped[0].min() >= 0 and clipped[0].mean() > 0.035
    assert free[0].min() < 0 and abs(free[0].mean() - 0.03) < 0.001
    run, _ = calibrate_plane(img, roles, Settings(calibration=cals, calibration_check="off"),
                             0.02)
    np.testing.assert_allclose(run, free)
