"""The offsets a user passes, checked against the image's dark background
(pipeline.background.offset_check; docs/calibration.md, "Checking the offsets you pass")."""

import logging

import numpy as np
import pytest

from pipeline.background import OFFSET_TOLERANCE, offset_check
from pipeline.calibration import calibrate_plane
from pipeline.config import Calibration, Settings
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case
from pipeline.summary import image_flags


@pytest.fixture(scope="module")
def nucleus():
    """A one-channel camera nucleus in a dark field (offset 100 ADU), tuning seed 11."""
    return make_stress_case(next(s for s in STRESS_SPECS if s.name == "nuc_cam_smooth_1ch"), 11)


def test_the_true_offset_agrees_and_a_forgotten_one_is_contradicted(nucleus):
    true = [c.offset for c in nucleus.calibration]
    ok = offset_check(nucleus.image, true, nucleus.pixel_size_um)
    assert ok["checked"] and not ok["contradicted"]
    assert abs(ok["channels"][0]["relative"]) < 0.01
    bad = offset_check(nucleus.image, [0.0], nucleus.pixel_size_um)
    assert bad["contradicted"] and bad["channels"][0]["relative"] > 0.2
    assert "channel 0" in bad["statement"] and "offset" in bad["statement"]


def test_the_tolerance_is_relative_to_the_nuclei_signal(nucleus):
    (cal,) = nucleus.calibration
    nuclei = offset_check(nucleus.image, [cal.offset], nucleus.pixel_size_um)["channels"][0]
    signal = nuclei["nuclei_median"] - cal.offset
    # an offset off by half the tolerance passes; by twice the tolerance it does not
    half = cal.offset - 0.5 * OFFSET_TOLERANCE * signal
    twice = cal.offset - 2.0 * OFFSET_TOLERANCE * signal
    assert not offset_check(nucleus.image, [half], nucleus.pixel_size_um)["contradicted"]
    assert offset_check(nucleus.image, [twice], nucleus.pixel_size_um)["contradicted"]
    # an offset above the nuclei themselves
    above = offset_check(nucleus.image, [nuclei["nuclei_median"] + 1], nucleus.pixel_size_um)
    assert above["contradicted"] and above["channels"][0]["relative"] is None


def test_a_field_without_background_is_not_checked():
    case = make_stress_case(next(s for s in STRESS_SPECS if s.name == "cam_smooth_1ch"), 11)
    out = offset_check(case.image, [0.0], case.pixel_size_um)
    assert not out["checked"] and not out["contradicted"]


def test_a_run_records_it_warns_and_flags_the_plane(nucleus, caplog):
    roles = ("heterochromatin",)
    wrong = Settings(calibration=(Calibration(offset=0.0, scale=nucleus.calibration[0].scale),))
    with caplog.at_level(logging.WARNING, logger="pipeline.calibration"):
        fields, rec = calibrate_plane(nucleus.image, roles, wrong, nucleus.pixel_size_um)
    assert rec["offset_check"]["contradicted"] and "dark background" in caplog.text
    assert "offset-contradicted" in image_flags({"planes": [{"calibration": rec}]}, 0, 1.0)
    # nothing is changed: the fields are the user's calibration's
    expected = (nucleus.image[0].astype(float) - 0.0) * nucleus.calibration[0].scale
    assert np.allclose(fields[0], expected)
    _, ok = calibrate_plane(nucleus.image, roles, Settings(calibration=nucleus.calibration),
                            nucleus.pixel_size_um)
    assert not ok["offset_check"]["contradicted"]
    assert "offset-contradicted" not in image_flags({"planes": [{"calibration": ok}]}, 0, 1.0)
