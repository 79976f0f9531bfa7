"""Two channels brought into register with ``--channel-offset`` (pipeline.registration): the
shift against an analytic answer, the noise it leaves alone, its records and refusals, and what
it does to λ on a small stress case."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import tifffile

from pipeline.config import Settings
from pipeline.config_parse import parse_offset
from pipeline.registration import fourier_shifted

ROLES2 = ("chromatin", "heterochromatin")


def _gaussian(shape, centre, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


def test_the_shift_moves_a_blob_by_a_fraction_of_a_pixel():
    """A Gaussian blob moved by (0.3, -1.7) px equals the blob drawn at the moved centre
    (the formula, not the code's transform), to 1e-6 of its peak; the sign is the one the
    docstring states (a point at p goes to p + shift)."""
    shape = (64, 72)
    moved = fourier_shifted(_gaussian(shape, (30.0, 35.0)), (0.3, -1.7))
    assert np.abs(moved - _gaussian(shape, (30.3, 33.3))).max() < 1e-6
    assert np.abs(moved - _gaussian(shape, (29.7, 36.7))).max() > 0.05


def test_the_shift_keeps_white_noise_white():
    """The reason for a Fourier shift: white noise moved by half a pixel stays white (lag-1
    autocorrelation near 0, the same standard deviation); linear interpolation would make it
    correlated (0.5) and 30 % smaller, which the noise model would read as a filtered image."""
    z = np.random.default_rng(0).normal(size=(256, 256))
    s = fourier_shifted(z, (0.5, 0.0))
    rho = float(np.mean(s[1:] * s[:-1]) / np.mean(s * s))
    assert abs(rho) < 0.05 and abs(s.std() / z.std() - 1) < 0.02
    linear = 0.5 * (z + np.roll(z, 1, axis=0))
    assert float(np.mean(linear[1:] * linear[:-1]) / np.mean(linear**2)) > 0.4


def test_parse_and_settings():
    assert parse_offset("0.012, -0.004") == (0.012, -0.004)
    for bad in ("0.01", "a,b", "0.01,0.02,0.03", "nan,0"):
        with pytest.raises(ValueError, match="channel offset"):
            parse_offset(bad)
    assert Settings(channel_offset_um=(0.01, 0.0)).channel_offset_um == (0.01, 0.0)


def test_calibrate_plane_moves_the_heterochromatin_channel_and_records_it(caplog):
    """The heterochromatin channel (here the second) is moved back by the offset in pixels
    before the calibration; the chromatin channel is untouched; the record says by how much.
    One channel: a warning, nothing moved."""
    from pipeline.calibration import calibrate_plane

    px = 0.02
    chrom = 100 + 800 * _gaussian((64, 64), (32.0, 32.0))
    het = 100 + 800 * _gaussian((64, 64), (32.5, 31.0))  # offset (+0.5, -1) px
    plane = np.stack([chrom, het])
    s = Settings(calibration=({"offset": 100, "scale": 1e-3},) * 2, calibration_check="off",
                 channel_offset_um=(0.5 * px, -1.0 * px))
    fields, rec = calibrate_plane(plane, ROLES2, s, px)  # (phi_h, phi_w = 1 - chromatin)
    assert np.abs(fields[0] - (1 - fields[1])).max() < 1e-6
    assert rec["registration"]["shift_px"] == pytest.approx([-0.5, 1.0])
    assert rec["registration"]["offset_um"] == pytest.approx([0.01, -0.02])
    plain, rec0 = calibrate_plane(plane, ROLES2, s.model_copy(update={
        "channel_offset_um": None}), px)
    assert "registration" not in rec0 and np.abs(plain[0] - (1 - plain[1])).max() > 0.1
    with caplog.at_level(logging.WARNING):
        one, rec1 = calibrate_plane(het[None], ("heterochromatin",), Settings(
            calibration=({"offset": 100, "scale": 1e-3},), channel_offset_um=(0.01, 0.0)), px)
    assert "registration" not in rec1 and "has one: ignored" in caplog.text


def test_lambda_of_channels_out_of_register_with_and_without_the_offset():
    """A two-channel camera stress case at 0.015 µm (tuning seed 11) whose
    heterochromatin channel lies half a pixel (7.5 nm) off: λ's correlation with the truth
    falls by over 0.2; with ``--channel-offset`` set to that offset it is back within 0.005
    of the registered image's."""
    from benchmarks.registration import as_counts, shifted
    from benchmarks.stress import evaluation_region, fit, score
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = {s.name: s for s in STRESS_SPECS}["cam_smooth_2ch_px15"]
    case = make_stress_case(spec, 11)
    moved = case.image.astype(np.float64)
    moved[1] = shifted(moved[1], (0.5, 0.0))
    off = as_counts(moved)
    region = evaluation_region(case)
    r = {}
    for label, image, given in (("registered", case.image, None), ("off", off, None),
                                ("offset given", off, (0.5 * case.pixel_size_um, 0.0))):
        mean, std, ident = fit(image, dataclasses.replace(case, image=image), "closed-form",
                               channel_offset_um=given)
        r[label] = score(mean.astype(float), std.astype(float), ident, case.lam, region)["r"]
    assert r["off"] < r["registered"] - 0.2, r
    assert abs(r["offset given"] - r["registered"]) < 0.005, r


def test_a_run_records_the_offset(tmp_path):
    """Through the run's stages on a real two-channel TIFF: the store's plane record holds the
    offset applied; the input file is not modified."""
    from pipeline.io import open_result_store
    from pipeline.process import process_image

    rng = np.random.default_rng(2)
    chrom = 100 + rng.poisson(400 + 300 * _gaussian((96, 96), (48.0, 48.0), 12.0))
    het = 100 + rng.poisson(200 + 300 * _gaussian((96, 96), (48.5, 48.0), 8.0))
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "two.tif"
    tifffile.imwrite(path, np.stack([chrom, het]).astype(np.uint16), imagej=True,
                     resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um", "axes": "CYX"})
    before = path.read_bytes()
    s = Settings(method="closed-form", estimator={"delta_um": 0.06, "window_um": 0.06},
                 calibration=({"offset": 100, "scale": 1e-3},) * 2, calibration_check="off",
                 channel_offset_um=(0.01, 0.0), run={"denoise": "none", "segment": False})
    m = process_image(path, tmp_path / "out", s)
    rec = open_result_store(m["store"])["attrs"]["planes"][0]["calibration"]["registration"]
    assert rec["offset_um"] == [0.01, 0.0] and rec["shift_px"] == pytest.approx([-0.5, 0.0])
    assert path.read_bytes() == before
    from pipeline.summary import summarize_store

    assert summarize_store(m["store"])["images"]["channel_offset_um"].iloc[0] == "0.01,0"


def test_channel_offset_command_measures_a_bead_image(tmp_path, capsys):
    """``chromarate channel-offset BEADS.tif`` on a real two-channel TIFF of noisy beads whose
    heterochromatin channel lies (+0.35, -0.6) px off: it prints that offset in µm (to 0.02 px)
    as the option to pass; a one-channel file is refused naming the file."""
    from flows.cli import main

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    centres = rng.uniform(10, 118, (25, 2))

    def beads(dy, dx):
        img = sum(np.exp(-((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / (2 * 1.5**2))
                  for cy, cx in centres)
        return rng.poisson(100 + 2000 * img)

    stack = np.stack([beads(0, 0), beads(0.35, -0.6)]).astype(np.uint16)
    path = tmp_path / "beads.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.04, 1 / 0.04),
                     metadata={"unit": "um", "axes": "CYX"})
    assert main(["channel-offset", str(path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    dy, dx = (float(v) for v in out[-1].removeprefix("--channel-offset ").split(","))
    assert abs(dy - 0.35 * 0.04) < 0.02 * 0.04 and abs(dx + 0.6 * 0.04) < 0.02 * 0.04, out
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, stack[0], imagej=True, resolution=(1 / 0.04, 1 / 0.04),
                     metadata={"unit": "um"})
    assert main(["channel-offset", str(one)]) == 2
    assert "one.tif" in capsys.readouterr().err
    # a third channel (transmitted light) beside the beads' two: named by --channels
    three = tmp_path / "three.tif"
    tifffile.imwrite(three, np.stack([stack[1], stack[0] // 2, stack[0]]), imagej=True,
                     resolution=(1 / 0.04, 1 / 0.04), metadata={"unit": "um", "axes": "CYX"})
    assert main(["channel-offset", str(three)]) == 2
    assert "--channels chromatin,heterochromatin,ignore" in capsys.readouterr().err
    assert main(["channel-offset", str(three), "--channels",
                 "heterochromatin,ignore,chromatin"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == out[-1]
