"""Uneven illumination divided out with a flat field (``--flat-field``,
pipeline.calibration.illumination_corrected): the division, its records, its refusals, and
what it does to λ on a small stress case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.cache import image_key
from pipeline.calibration import (
    FLAT_SMOOTH_PX,
    alternative_fields,
    calibrate_plane,
    check_flat_field_size,
    flat_field_gain,
    illumination_corrected,
    read_flat_field,
)
from pipeline.config import Calibration, Settings
from pipeline.physics.observation import to_fields
from pipeline.simulate.stress import illumination_profile

PX = 0.05
DARK = 137.0
SHAPE = (96, 112)
ROLES2 = ("chromatin", "heterochromatin")


def _signal(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    texture = 0.6 + 0.3 * np.sin(xx / 5.0 + rng.uniform(0, 6)) * np.cos(yy / 7.0)
    return np.stack([900.0 * np.ones(SHAPE), 900.0 * texture])


def _write(path: Path, arr: np.ndarray) -> Path:
    tifffile.imwrite(path, arr)
    return path


def _flat(corner: float = 0.6, photons: float = 3000.0, channels: int = 2, seed: int = 1
          ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    beam = illumination_profile(SHAPE, corner)
    flat = DARK + rng.poisson(photons * np.broadcast_to(beam, (channels, *SHAPE)))
    return np.rint(flat + rng.normal(0, 2.0, flat.shape)).astype(np.uint16)


def test_the_flat_field_divides_the_illumination_out(tmp_path):
    """An image lit by a beam that falls to 0.6 at the corners, corrected with a noisy flat
    field of that beam, is the evenly lit image times the beam's mean (the flat is normalised
    to its mean, so the field-average intensity stays), to well within the flat's own noise.
    Without the division the centre and corners differ by 40 %."""
    beam = illumination_profile(SHAPE, 0.6)
    signal = _signal()
    plane = DARK + signal * beam
    settings = Settings(calibration=(Calibration(offset=DARK, scale=1e-3),) * 2,
                        flat_field=_write(tmp_path / "flat.tif", _flat()))
    out, rec = illumination_corrected(plane, ROLES2, settings, PX)
    want = DARK + signal * beam.mean()
    assert out.dtype == np.float32 and out.shape == plane.shape
    inner = (slice(8, -8), slice(8, -8))  # the smoothing's reflected border aside
    rel = np.abs(out - want)[:, inner[0], inner[1]] / (want - DARK)[:, inner[0], inner[1]]
    assert rel.max() < 0.01, rel.max()
    assert np.abs(plane - want)[:, inner[0], inner[1]].max() / 900 > 0.15  # it did something
    assert rec == {"path": str(tmp_path / "flat.tif"), "dark_level": "user",
                   # the corner pixels' smoothing (a border the fit blanks) lifts the minimum
                   "gain_min": pytest.approx([0.6 / beam.mean()] * 2, rel=0.03),
                   "gain_max": pytest.approx([1 / beam.mean()] * 2, rel=0.02)}
    # without a flat field the plane passes untouched
    same, none = illumination_corrected(plane, ROLES2, Settings(), PX)
    assert same is plane and none is None


def test_calibrate_plane_uses_and_records_the_corrected_plane(tmp_path):
    """calibrate_plane's fields are those of the corrected plane, the record says which flat
    field and which dark level; the fields the calibration check's alternative uses are
    corrected too."""
    beam = illumination_profile(SHAPE, 0.5)
    plane = np.rint(DARK + _signal() * beam).astype(np.uint16)
    cals = (Calibration(offset=DARK, scale=1e-3), Calibration(offset=DARK, scale=1.2e-3))
    settings = Settings(calibration=cals, flat_field=_write(tmp_path / "f.tif", _flat(0.5)))
    fields, rec = calibrate_plane(plane, ROLES2, settings, PX)
    corrected, _ = illumination_corrected(plane, ROLES2, settings, PX)
    want, _ = to_fields(corrected, ROLES2, cals, clip=False)
    np.testing.assert_allclose(fields, want, rtol=1e-6)
    assert rec["flat_field"]["path"].endswith("f.tif") and rec["flat_field"]["dark_level"] == "user"
    # the chromatin (uniform in the sample, 0.9 of full occupancy: φ_w = 0.1) is even again;
    # under the beam it spans 0.45-0.9
    assert np.ptp(fields[1][10:-10, 10:-10]) < 0.02
    # a contradicted check, kept: the alternative calibration's fields see the same correction
    record = rec | {"check": {"contradicted": True, "preferred_ratio": 1.1}}
    alt = alternative_fields(plane, ROLES2, settings, record)
    assert np.ptp(alt[1][10:-10, 10:-10]) < 0.02


def test_the_dark_level_without_pairs(tmp_path):
    """--calibration image: the dark level comes from the dark frame when there is one (it is
    the flat's too), else from the background, and a later plane reuses the first plane's."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    disc = np.hypot(yy - 48, xx - 56) < 30
    plane = (DARK + 800.0 * disc * illumination_profile(SHAPE, 0.7))[None]
    flat = _write(tmp_path / "flat.tif", _flat(0.7, channels=1))
    _, rec = illumination_corrected(plane, ("heterochromatin",), Settings(flat_field=flat), PX)
    assert rec["dark_level"] == "image-background"
    _write(tmp_path / "dark.tif", np.full(SHAPE, DARK, np.uint16))
    s = Settings(flat_field=flat, dark_frame=tmp_path / "dark.tif")
    out, rec = illumination_corrected(plane, ("heterochromatin",), s, PX)
    assert rec["dark_level"] == "dark-frame"
    assert out[0][~disc].mean() == pytest.approx(DARK, abs=0.5)  # the background stays dark
    inside = disc & (np.hypot(yy - 48, xx - 56) < 25)
    assert np.ptp(out[0][inside]) < 0.03 * 800  # the disc is evenly lit again
    reuse = {"channels": [{"offset": 120.0, "scale": 1.0}]}
    _, rec = illumination_corrected(plane, ("heterochromatin",), Settings(flat_field=flat), PX,
                                    reuse=reuse)
    assert rec["dark_level"] == "first plane"


def test_flat_field_shapes(tmp_path):
    """(Y, X) lights every channel; frames are averaged; (C, Y, X) per channel."""
    one = _flat(channels=1)[0]
    assert read_flat_field(_write(tmp_path / "a.tif", one), 2, SHAPE).shape == (2, *SHAPE)
    frames = np.stack([one, one + 2])
    got = read_flat_field(_write(tmp_path / "b.tif", frames), 1, SHAPE)
    np.testing.assert_allclose(got[0], one + 1.0)
    got = read_flat_field(_write(tmp_path / "c.tif", np.stack([frames, frames], 1)), 2, SHAPE)
    assert got.shape == (2, *SHAPE)


def test_bad_flat_fields_are_refused_by_name(tmp_path):
    """A flat of another size, of the wrong channel count, one that reaches the dark level,
    one that is no TIFF, and a missing file: each error names the file and the problem."""
    with pytest.raises(ValueError, match=r"small\.tif: 48 x 112 pixels, the image 96 x 112"):
        read_flat_field(_write(tmp_path / "small.tif", _flat(channels=1)[0][:48]), 1, SHAPE)
    with pytest.raises(ValueError, match=r"three\.tif: shape \(3, 96, 112\).*2 channel"):
        read_flat_field(_write(tmp_path / "three.tif", _flat(channels=3)), 2, SHAPE)
    dim = _flat(channels=1).astype(float)
    dim[0, :, :30] = DARK  # a third of the field unlit
    with pytest.raises(ValueError, match=r"dim\.tif: channel 0 falls to .* of its mean"):
        flat_field_gain(dim, [DARK], path=tmp_path / "dim.tif")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(ValueError, match=r"flat field .*bad\.tif: cannot be read"):
        read_flat_field(bad, 1, SHAPE)
    with pytest.raises(ValueError, match="flat field .* is not a file"):
        Settings(flat_field=tmp_path / "missing.tif")
    # the size, from the header alone (the run checks it before any work)
    check_flat_field_size(tmp_path / "small.tif", (48, 112))
    with pytest.raises(ValueError, match=r"small\.tif: 48 x 112 pixels, the image 96 x 112"):
        check_flat_field_size(tmp_path / "small.tif", SHAPE)
    check_flat_field_size(bad, SHAPE)  # no TIFF: refused when it is read, above


def test_the_flat_field_is_smoothed():
    """The flat's own photon noise does not reach the image: away from the border, the gain
    of an evenly lit flat (3000 photons, 1.8 % pixel noise) stays within 5 standard
    deviations of the smoothed noise of 1, and its pixel-to-pixel noise is gone."""
    rng = np.random.default_rng(3)
    flat = (DARK + rng.poisson(3000, (1, *SHAPE))).astype(float)
    gain = flat_field_gain(flat, [DARK])[0, 8:-8, 8:-8]
    smoothed = 1 / np.sqrt(3000) / (2 * np.sqrt(np.pi) * FLAT_SMOOTH_PX)  # 0.13 %
    assert np.abs(gain - 1).max() < 5 * smoothed
    assert np.std(np.diff(gain, axis=1)) < 0.05 / np.sqrt(3000)


def test_the_flat_fields_hot_pixels_do_not_reach_the_gain():
    """Hot pixels in the flat (+20000 ADU at 0.1 % of its pixels, the camera's, not the
    beam's) are replaced before the smoothing: the gain is the clean flat's to 0.2 % (the
    replaced pixels' own noise, smoothed); kept, each would raise the gain around it by
    about 10 %."""
    flat = _flat(channels=1).astype(float)
    hot = flat.copy()
    rng = np.random.default_rng(5)
    where = rng.random(SHAPE) < 1e-3
    hot[0][where] += 20000
    clean = flat_field_gain(flat, [DARK])
    assert np.abs(flat_field_gain(hot, [DARK]) - clean).max() < 2e-3
    from scipy.ndimage import gaussian_filter

    kept = gaussian_filter(hot[0] - DARK, FLAT_SMOOTH_PX, mode="nearest")
    kept /= kept.mean()
    assert np.abs(kept - clean[0]).max() > 5e-2


def test_a_flat_field_enters_the_key_with_its_content(tmp_path):
    image = _write(tmp_path / "img.tif", np.zeros((8, 8), np.uint16))
    flat = tmp_path / "flat.tif"
    flat.write_bytes(b"first flat")
    settings = Settings(flat_field=flat)
    key = image_key(image, settings)
    assert key != image_key(image, Settings())
    flat.write_bytes(b"a new flat, same name")
    assert image_key(image, settings) != key


def test_lambda_under_an_uneven_beam_with_and_without_the_flat_field(tmp_path):
    """A small single-channel stress case (tuning seed 11) under a beam that falls to 0.6 at
    the corners, with the pairs a calibration sample under that beam gives (averaged over the
    field). Without the flat field λ's level follows the beam (rmse over 3 times the evenly lit
    image's); with it the rmse is back within 15 % of the evenly lit one's."""
    from benchmarks.illumination import flat_and_dark
    from benchmarks.stress import evaluation_region, fit, score
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = dataclasses.replace({s.name: s for s in STRESS_SPECS}["cam_smooth_1ch"], size_px=128)
    even = make_stress_case(spec, 11)
    lit = make_stress_case(dataclasses.replace(spec, illumination=0.6), 11)
    beam = float(illumination_profile(lit.image.shape[-2:], 0.6).mean())
    lit = dataclasses.replace(lit, calibration_given=tuple(
        Calibration(offset=c.offset, scale=c.scale / beam) for c in lit.calibration_given))
    flat, dark = flat_and_dark(lit.image.shape, 0.6, 3000.0, np.random.default_rng(5))
    region = evaluation_region(even)
    rmse = {}
    for label, case, frames in (
            ("even", even, {}), ("uneven", lit, {}),
            ("flat", lit, {"flat_field": _write(tmp_path / "flat.tif", flat),
                           "dark_frame": _write(tmp_path / "dark.tif", dark)})):
        mean, std, ident = fit(case.image, case, "closed-form", **frames)
        rmse[label] = score(mean.astype(float), std.astype(float), ident, even.lam,
                            region)["rmse"]
    assert rmse["uneven"] > 3 * rmse["even"], rmse
    assert rmse["flat"] < 1.15 * rmse["even"], rmse
