"""The check of a user's two-channel calibration against the image (pipeline.calibration_check)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.calibration import calibrate_plane
from pipeline.calibration_check import CHECK_TOLERANCE, check_calibration
from pipeline.config import Calibration, Settings
from pipeline.physics.chromatin import ChromatinModel
from pipeline.self_calibration import MIN_CONTRAST
from pipeline.simulate.stress import StressSpec, make_stress_case
from pipeline.summary import image_flags

ROLES = ("chromatin", "heterochromatin")


@pytest.fixture(scope="module")
def case():
    """A small two-channel camera image of the stress suite's kind (a steady state, PSF blur,
    Poisson and read noise), 0.03 µm pixels: big enough for the criterion."""
    spec = StressSpec(name="check", kind="lognormal", channels=2, pixel_size_um=0.03,
                      size_px=128, lam_scale_um=1.0)
    return make_stress_case(spec, seed=5)


def _het_scaled(cals, factor):
    ih = ROLES.index("heterochromatin")
    return tuple(Calibration(offset=c.offset, scale=c.scale * (factor if k == ih else 1.0))
                 for k, c in enumerate(cals))


def _check(case, cals):
    return check_calibration(case.image.astype(float), ROLES, cals, case.pixel_size_um,
                             ChromatinModel())


def test_the_true_calibration_is_consistent(case):
    out = _check(case, case.calibration)
    assert out["checked"] and not out["contradicted"]
    assert abs(out["preferred_ratio"] - 1) < CHECK_TOLERANCE
    assert out["excess"] < MIN_CONTRAST  # the criterion at the user's ratio is near its minimum
    assert "consistent" in out["statement"]


@pytest.mark.parametrize("factor", [1.25, 1 / 1.25])
def test_a_wrong_ratio_is_contradicted_and_the_right_one_preferred(case, factor):
    out = _check(case, _het_scaled(case.calibration, factor))
    assert out["checked"] and out["contradicted"]
    # the image prefers the true ratio: the preferred one undoes the error within 5 %
    assert out["preferred_ratio"] * factor == pytest.approx(1.0, abs=0.05)
    assert out["excess"] > 0.2 and "λ's pattern may be wrong" in out["statement"]


def test_pure_noise_cannot_judge_a_calibration():
    rng = np.random.default_rng(0)
    img = 100 + rng.poisson(400.0, (2, 128, 128)).astype(float)
    cals = (Calibration(offset=100, scale=0.7 / 500), Calibration(offset=100, scale=0.3 / 500))
    out = check_calibration(img, ROLES, cals, 0.03, ChromatinModel())
    assert not out["checked"] and not out["contradicted"]
    assert out["statement"].startswith("not checked")


def _storm_case(size_px: int, pixel_size_um: float):
    spec = StressSpec(name="storm", kind="smooth", channels=2, pixel_size_um=pixel_size_um,
                      size_px=size_px, lam_scale_um=1.2, rendering="storm", locs_per_px=20,
                      precision_nm=25)
    return make_stress_case(spec, seed=5)


def test_a_small_storm_rendering_is_not_judged():
    """Rendered localisations on a small field: the noise-free residual energy estimated from
    the split is not positive at its minimum, so a 25 % ratio error is left unjudged rather
    than "corrected" by noise."""
    storm = _storm_case(128, 0.02)
    out = _check(storm, _het_scaled(storm.calibration, 1.25))
    assert not out["checked"] and not out["contradicted"]


def test_a_storm_rendering_is_judged_with_its_correlated_noise():
    """The split's noise has the rendering's spatial correlation (self_calibration._split_noise):
    on a 256 px rendering at 0.015 um the criterion then identifies the ratio (its contrast was
    0.05 with white split noise, which leaves the halves' noise correlated)."""
    storm = _storm_case(256, 0.015)
    right = _check(storm, storm.calibration)
    assert right["checked"] and not right["contradicted"] and right["contrast"] >= MIN_CONTRAST
    wrong = _check(storm, _het_scaled(storm.calibration, 1.25))
    assert wrong["contradicted"]
    assert wrong["preferred_ratio"] * 1.25 == pytest.approx(1.0, abs=0.05)


def test_split_noise_is_white_for_a_camera_and_correlated_for_a_rendering(case):
    from scipy import ndimage as ndi

    from pipeline.self_calibration import _split_noise

    data = case.image.astype(float)
    sig = np.full(data.shape, 2.0)
    white = _split_noise(data, sig, None, np.random.default_rng(3))
    assert np.array_equal(white, np.random.default_rng(3).normal(size=data.shape) * sig)
    rng = np.random.default_rng(4)
    rendered = 100 + np.stack([ndi.gaussian_filter(rng.poisson(50.0, (128, 128)).astype(float),
                                                   1.5) for _ in range(2)])
    z = _split_noise(rendered, np.full(rendered.shape, 2.0), None, np.random.default_rng(3))
    lag1 = np.mean([np.corrcoef(zc[:, 1:].ravel(), zc[:, :-1].ravel())[0, 1] for zc in z])
    assert lag1 > 0.5
    # the level is the rendering's own noise (the spectral fit), not the finest-scale one
    assert z.std() == pytest.approx((rendered - ndi.gaussian_filter(rendered, (0, 8, 8))).std(),
                                    rel=0.3)


def test_too_small_a_field_is_not_checked(case):
    out = check_calibration(case.image[:, :60, :60].astype(float), ROLES, case.calibration,
                            case.pixel_size_um, ChromatinModel())
    assert not out["checked"] and "too small" in out["statement"]


def test_a_run_records_the_check_warns_and_flags_the_plane(case, caplog):
    wrong = _het_scaled(case.calibration, 1.25)
    settings = Settings(calibration=wrong)
    with caplog.at_level(logging.WARNING, logger="pipeline.calibration"):
        _, rec = calibrate_plane(case.image, ROLES, settings, case.pixel_size_um)
    assert rec["check"]["contradicted"] and "calibration check" in caplog.text
    attrs = {"planes": [{"calibration": rec}]}
    assert "calibration-contradicted" in image_flags(attrs, 0, 1.0)
    # a later plane of the stack carries the first plane's check, without a new one
    _, later = calibrate_plane(case.image, ROLES, settings, case.pixel_size_um, reuse=rec)
    assert later["check"]["contradicted"] and later["check"]["reused_from_plane"] == 0
    # the true calibration: no flag; with the check off: no record
    _, ok = calibrate_plane(case.image, ROLES, Settings(calibration=case.calibration),
                            case.pixel_size_um)
    assert not ok["check"]["contradicted"]
    assert "calibration-contradicted" not in image_flags({"planes": [{"calibration": ok}]}, 0, 1)
    _, off = calibrate_plane(case.image, ROLES,
                             Settings(calibration=wrong, calibration_check="off"),
                             case.pixel_size_um)
    assert "check" not in off


def test_fix_uses_the_ratio_the_image_prefers(case):
    ih = ROLES.index("heterochromatin")
    wrong = _het_scaled(case.calibration, 1.25)
    fields, rec = calibrate_plane(case.image, ROLES,
                                  Settings(calibration=wrong, calibration_check="fix"),
                                  case.pixel_size_um)
    assert rec["check"]["contradicted"] and rec["check"]["applied"]
    assert "corrected" in rec["channels"][ih]["source"]
    # the corrected heterochromatin scale is the true one within 5 %; the chromatin one as given
    assert rec["channels"][ih]["scale"] == pytest.approx(case.calibration[ih].scale, rel=0.05)
    assert rec["channels"][1 - ih]["scale"] == wrong[1 - ih].scale
    expect = (case.image[ih] - wrong[ih].offset) * rec["channels"][ih]["scale"]
    assert np.allclose(fields[0], expect)  # [phi_h, phi_w]: phi_h corrected (never clipped)
    assert "calibration-contradicted" in image_flags({"planes": [{"calibration": rec}]}, 0, 1)
    # a calibration the image agrees with is left as given
    _, same = calibrate_plane(case.image, ROLES,
                              Settings(calibration=case.calibration, calibration_check="fix"),
                              case.pixel_size_um)
    assert same["channels"][ih]["scale"] == case.calibration[ih].scale
    assert "applied" not in same["check"]


def test_a_kept_contradicted_calibration_widens_the_std_to_cover_the_truth(case):
    """--calibration-check warn keeps the user's pairs; the std then adds what the image's
    preferred ratio changes, and the interval covers the truth the user's pairs miss."""
    from pipeline.calibration import alternative_fields
    from pipeline.estimate import fit_plane

    wrong = _het_scaled(case.calibration, 1.25)
    settings = Settings(calibration=wrong, estimator={"delta_um": 0.3, "window_um": 0.3})
    fields, rec = calibrate_plane(case.image, ROLES, settings, case.pixel_size_um)
    alt = alternative_fields(case.image, ROLES, settings, rec)
    assert alt is not None and alt.shape == fields.shape
    model = ChromatinModel()
    plain = fit_plane(fields, model, case.pixel_size_um, settings)
    wide = fit_plane(fields, model, case.pixel_size_um, settings, alternative=alt)
    # the numbers stay the user's; only the std grows, by the recorded term
    assert np.array_equal(plain.mean, wide.mean, equal_nan=True)
    ok = plain.identifiable & wide.identifiable
    ok[:16], ok[-16:], ok[:, :16], ok[:, -16:] = False, False, False, False
    assert np.all(wide.std[ok] >= plain.std[ok] - 1e-6)
    term = wide.record["std_calibration_term"]
    assert term > 0.5 * np.median(plain.std[ok]) and plain.record["std_calibration_term"] is None

    def cover(fit):
        return float(np.mean(np.abs(fit.mean - case.lam)[ok] <= 1.645 * fit.std[ok]))

    assert cover(plain) < 0.8 < cover(wide)
    # the true pairs, or the fix, leave nothing to add
    _, rec_ok = calibrate_plane(case.image, ROLES, Settings(calibration=case.calibration),
                                case.pixel_size_um)
    assert alternative_fields(case.image, ROLES, settings, rec_ok) is None
    fixed = Settings(calibration=wrong, calibration_check="fix")
    _, rec_fix = calibrate_plane(case.image, ROLES, fixed, case.pixel_size_um)
    assert alternative_fields(case.image, ROLES, fixed, rec_fix) is None


def test_a_run_fits_a_kept_contradicted_calibration_with_the_wider_std(case, tmp_path):
    """Through the run's stages (a real TIFF, process_image): the plane is flagged, and its
    fit record carries the calibration term the std includes."""
    import tifffile

    from pipeline.io import open_result_store
    from pipeline.process import process_image
    from pipeline.summary import summarize_store

    path = tmp_path / "two_channel.tif"
    px = case.pixel_size_um
    tifffile.imwrite(path, case.image, imagej=True, resolution=(1 / px, 1 / px),
                     metadata={"unit": "um", "axes": "CYX", "Labels": list(ROLES)})
    settings = Settings(method="closed-form", calibration=_het_scaled(case.calibration, 1.25),
                        estimator={"delta_um": 0.3, "window_um": 0.3},
                        run={"denoise": "none", "segment": False})
    m = process_image(path, tmp_path / "out", settings)
    plane = open_result_store(m["store"])["attrs"]["planes"][0]
    assert plane["calibration"]["check"]["contradicted"]
    assert plane["std_calibration_term"] > 0
    assert "calibration-contradicted" in summarize_store(m["store"])["images"]["flags"].iloc[0]
