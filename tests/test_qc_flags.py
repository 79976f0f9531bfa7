"""Every QC flag of summary_images.csv on a case that raises it, through the real stages (the
flags of single planes of a stack: test_stack_planes.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.config import TESTED_PIXEL_UM, Settings
from pipeline.io import open_result_store
from pipeline.process import process_image
from pipeline.simulate import simulate_folder
from pipeline.summary import FLAGS, image_flags, store_notes, summarize_store

DATA = Path(__file__).parent / "data"
FAST = {"method": "closed-form", "estimator": {"delta_um": 0.06, "window_um": 0.06}}


def _flags(store) -> list[str]:
    """The plane's flags, less ``calibration-unidentifiable``: whether an automatic
    calibration is identifiable is the calibration's own decision (tested with it)."""
    flags = summarize_store(store)["images"]["flags"].iloc[0].split(";")
    return [f for f in flags if f != "calibration-unidentifiable"]


@pytest.fixture(scope="module")
def inside_one_nucleus(tmp_path_factory):
    """A synthetic field inside one nucleus (the synthetic suite's kind of image)."""
    root = tmp_path_factory.mktemp("inside")
    simulate_folder(root / "images", truth_dir=root / "truth", cases=[("lognormal", 1)],
                    shape=(64, 64), seed=21)
    return next((root / "images").glob("*.tif"))


def test_whole_field_and_calibration_auto(inside_one_nucleus, tmp_path):
    m = process_image(inside_one_nucleus, tmp_path, Settings(**FAST, run={"denoise": "none"}))
    assert _flags(m["store"]) == ["calibration-auto", "whole-field"]
    flags, notes = store_notes(m["store"])
    assert {"calibration-auto", "whole-field"} <= set(flags)
    assert any("whole field is treated as one nucleus" in n for n in notes)


def test_user_calibration_and_no_segmentation(inside_one_nucleus, tmp_path):
    s = Settings(**FAST, calibration=({"offset": 0.0, "scale": 1e-3},),
                 run={"denoise": "none", "segment": False})
    m = process_image(inside_one_nucleus, tmp_path, s)
    assert _flags(m["store"]) == ["no-segmentation"]


def test_no_nuclei_from_empty_user_labels(inside_one_nucleus, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    tifffile.imwrite(labels / f"{inside_one_nucleus.stem}.tif", np.zeros((64, 64), np.uint16))
    m = process_image(inside_one_nucleus, tmp_path / "out",
                      Settings(**FAST, run={"denoise": "none", "nuclei_dir": str(labels)}))
    assert _flags(m["store"]) == ["calibration-auto", "no-nuclei"]
    assert np.isnan(np.asarray(open_result_store(m["store"])["rates"])).all()


def test_bandwidth_at_grid_edge_and_low_identifiable_fraction(tmp_path):
    """A 96-pixel crop of the real field (tests/data; 4 nuclei) at 0.3 µm: the automatic
    bandwidth runs to the edge of its grid, and its derivative support is wider than the
    nuclei: too few pixels lie that far inside them to choose on, and none to report λ at
    (before the fit kept the nuclei's weight in that case, the border band left 24 % of the
    nuclei's pixels with a λ mixed from their edges and the background)."""
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "crop.tif",
                     tifffile.imread(DATA / "dsb2018_nuclei.tif")[128:224, 128:224])
    m = process_image(tmp_path / "in" / "crop.tif", tmp_path / "out", Settings(
        method="closed-form", pixel_size_um=0.3, run={"denoise": "gaussian"}))
    assert open_result_store(m["store"])["attrs"]["planes"][0]["selection"]["at_grid_edge"]
    row = summarize_store(m["store"])["images"].iloc[0]
    assert row["nuclei_mode"] == "threshold" and row["fraction_identifiable"] < 0.5
    assert _flags(m["store"]) == ["calibration-auto", "bandwidth-at-grid-edge",
                                  "nuclei-too-small", "low-identifiable-fraction",
                                  "pixel-size-untested"]


def test_noise_dominated(tmp_path):
    """A field of pure camera noise around a constant intensity: no bandwidth gives a map that
    is half signal, and the plane says so. (On pure noise the largest split reliability is
    itself noisy: 0.14-0.45 on 256 px fields, once 0.53 on a 128 px one, whose few
    independent windows at the widest bandwidths make the statistic rough.)"""
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(4)
    image = rng.poisson(400.0, (256, 256)).astype(np.uint16) + 100
    tifffile.imwrite(tmp_path / "in" / "noise.tif", image, imagej=True,
                     resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    m = process_image(tmp_path / "in" / "noise.tif", tmp_path / "out", Settings(
        method="closed-form", run={"denoise": "none", "segment": False}))
    selection = open_result_store(m["store"])["attrs"]["planes"][0]["selection"]
    assert selection["noise_dominated"] and selection["reference"]["reliability"] < 0.5
    assert "noise-dominated" in _flags(m["store"])


def test_plain_stack_axes_assumed_and_z_scale_unknown(tmp_path):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64]
    cell = ((yy - 30) ** 2 + (xx - 34) ** 2 < 20**2) * 800.0
    stack = np.stack([rng.poisson(cell + 100) for _ in range(2)]).astype(np.uint16)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "stack.tif", stack, photometric="minisblack")
    s = Settings(**FAST, pixel_size_um=0.02, run={"denoise": "none"})
    m = process_image(tmp_path / "in" / "stack.tif", tmp_path / "out", s)
    res = open_result_store(m["store"])
    assert res["axes"] == "zcyx" and res["attrs"]["axes_source"] == "default"
    for flags in summarize_store(m["store"])["images"]["flags"]:  # one row per plane
        assert {"axes-assumed", "z-scale-unknown"} <= set(flags.split(";"))
    _, notes = store_notes(m["store"])
    assert any("read as Z planes" in n for n in notes) and any("Z step" in n for n in notes)
    import zarr

    axes = dict(zarr.open_group(m["store"], mode="r").attrs["ome"])["multiscales"][0]["axes"]
    assert next(a for a in axes if a["name"] == "z").get("unit") is None
    # with --z-step the Z axis gets its scale and unit, and the flags go
    s = Settings(**FAST, pixel_size_um=0.02, run={"denoise": "none", "axes": "ZYX",
                                                  "z_step_um": 0.3})
    shutil.rmtree(tmp_path / "out")
    m = process_image(tmp_path / "in" / "stack.tif", tmp_path / "out", s)
    ms = dict(zarr.open_group(m["store"], mode="r").attrs["ome"])["multiscales"][0]
    z = [a["name"] for a in ms["axes"]].index("z")
    assert ms["axes"][z]["unit"] == "micrometer"
    scale = next(t for t in ms["datasets"][0]["coordinateTransformations"]
                 if t["type"] == "scale")["scale"]
    assert scale[z] == pytest.approx(0.3)
    for flags in summarize_store(m["store"])["images"]["flags"]:
        assert "calibration-auto" in flags
        assert not {"axes-assumed", "z-scale-unknown"} & set(flags.split(";"))


def test_multi_series_file_is_flagged_series_skipped(tmp_path, caplog):
    """A multi-position OME-TIFF (one series per position): the first position is analysed,
    the others are named once in the log, in the store's notes and by the flag."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:64, :64]
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "positions.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for k in range(3):
            cell = ((yy - 30 - k) ** 2 + (xx - 34) ** 2 < 20**2) * 800.0
            tw.write(rng.poisson(cell + 100).astype(np.uint16),
                     metadata={"axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02})
    s = Settings(**FAST, run={"denoise": "none"})
    with caplog.at_level("WARNING", logger="pipeline"):
        m = process_image(path, tmp_path / "out", s)
    assert caplog.text.count("holds 3 image series") == 1  # once, not once per stage
    flags = summarize_store(m["store"])["images"]["flags"].iloc[0].split(";")
    assert "series-skipped" in flags
    assert "pixel-size-untested" not in flags  # 0.02 µm: where accuracy was measured
    _, notes = store_notes(m["store"])
    assert any("not the other 2 (64 x 64 YX, 64 x 64 YX)" in n for n in notes)
    single = tmp_path / "in2" / "one.ome.tif"
    single.parent.mkdir()
    tifffile.imwrite(single, tifffile.imread(path), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02})
    m = process_image(single, tmp_path / "out2", s)
    assert "series-skipped" not in summarize_store(m["store"])["images"]["flags"].iloc[0]


def test_tested_pixel_sizes_are_those_of_the_stress_suite():
    """The range behind pixel-size-untested is the pixel sizes the stress designs and their
    10 nm variants were measured at, not a number of its own."""
    from pipeline.simulate.stress import EXTRA_SPECS, STRESS_SPECS

    sizes = [s.pixel_size_um for s in STRESS_SPECS + EXTRA_SPECS]
    assert TESTED_PIXEL_UM == (min(sizes), max(sizes))


def test_unidentifiable_calibration_is_read_from_the_record():
    """The calibration record may say it could not be determined (``identifiable``)."""
    attrs = {"planes": [{"calibration": {"channels": [{"source": "auto"}], "identifiable": False,
                                         "source": "self-calibrated"},
                         "segmentation": {"nuclei": {"mode": "threshold", "n_nuclei": 3}},
                         "selection": {}}]}
    assert image_flags(attrs, 0, 0.9) == ["calibration-auto", "calibration-unidentifiable"]
    assert set(image_flags(attrs, 0, 0.9)) <= set(FLAGS)
    attrs["planes"][0]["calibration"] = {"mode": "user", "source": "user", "identifiable": True,
                                         "channels": [{"source": "user"}]}
    assert image_flags(attrs, 0, 0.9) == []


def test_console_ends_with_flags_and_warnings(inside_one_nucleus, tmp_path, capsys,
                                              prefect_api):
    from flows.cli import main

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(inside_one_nucleus, images / "inside.tif")
    tifffile.imwrite(images / "plain.tif", tifffile.imread(inside_one_nucleus)[None].repeat(2, 0),
                     photometric="minisblack")
    rc = main(["run", str(images), "--out", str(tmp_path / "out"), "--method", "closed-form",
               "--delta", "0.06", "--window", "0.06", "--denoise", "none",
               "--pixel-size", "0.02"])
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert rc == 0
    assert "QC flags (column 'flags' of summary_images.csv" in err
    inside = err.split("inside.tif: calibration-auto, ")[1].split(" plain.tif")[0]
    assert "whole-field" in inside
    plain = err.split("plain.tif: calibration-auto, ")[1]
    assert "whole-field" in plain and "axes-assumed, z-scale-unknown" in plain
    assert "warning inside.tif: no background around nuclei" in err
    assert "warning plain.tif: the file does not name its axes (QYX)" in err
    assert "warning plain.tif: Z step unknown (none in the metadata, no --z-step)" in err


def test_user_labels_for_a_stack(tmp_path):
    """A Z stack with one label plane per plane (--nuclei): each plane keeps its own labels,
    and the Z step from the metadata gives the store its z scale."""
    from pipeline.io import write_tiff

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((2, 64, 64), np.uint16)
    labels[0][(yy - 20) ** 2 + (xx - 20) ** 2 < 12**2] = 4
    labels[1][(yy - 40) ** 2 + (xx - 40) ** 2 < 14**2] = 9
    image = rng.poisson(100 + 600 * (labels > 0) * (1 + 0.5 * rng.random((2, 64, 64))))
    (tmp_path / "in").mkdir()
    (tmp_path / "labels").mkdir()
    write_tiff(tmp_path / "in" / "zs.ome.tif", image.astype(np.uint16), axes="ZYX",
               pixel_size_um=0.05, z_step_um=0.2)
    tifffile.imwrite(tmp_path / "labels" / "zs_masks.tif", labels)
    m = process_image(tmp_path / "in" / "zs.ome.tif", tmp_path / "out", Settings(
        **FAST, run={"denoise": "none", "nuclei_dir": str(tmp_path / "labels")}))
    res = open_result_store(m["store"])
    np.testing.assert_array_equal(np.asarray(res["labels"]["nuclei"]), labels)
    assert res["attrs"]["z_step_um"] == pytest.approx(0.2)
    assert res["attrs"]["z_step_source"] == "ome"
    nuc = summarize_store(m["store"])["nuclei"]
    assert list(zip(nuc["plane"], nuc["label"], strict=True)) == [(0, 4), (1, 9)]
    flags = summarize_store(m["store"])["images"]["flags"]
    assert not any("z-scale-unknown" in f or "axes-assumed" in f for f in flags)


@pytest.mark.parametrize("ceiling", [4095, 65535])
def test_saturated_pixels_are_holes_in_the_fit(tmp_path, ceiling):
    """A field whose brightest patch is clipped at the detector's ceiling (12- or 16-bit):
    no λ within the derivative support of a clipped pixel, λ elsewhere as before, and the
    plane flagged. The same field unclipped is not flagged (its maximum is no ceiling)."""
    from scipy import ndimage

    from pipeline.mollifier import Mollifier
    from pipeline.physics.chromatin import ChromatinModel

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:128, :128]
    texture = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 4)
    texture = 1 + texture / texture.std() * 0.25
    bright = np.exp(-((yy - 40) ** 2 + (xx - 90) ** 2) / (2 * 6.0**2))
    scale = ceiling / 4095
    expected = (1500 * texture + 3000 * bright + 200) * scale
    raw = rng.poisson(expected).astype(np.float64)
    clipped = np.minimum(raw, ceiling).astype(np.uint16)
    assert 20 < (clipped == ceiling).sum() < 500
    (tmp_path / "in").mkdir()
    for name, image in (("clipped", clipped), ("free", (raw * 0.9).astype(np.uint16))):
        tifffile.imwrite(tmp_path / "in" / f"{name}.tif", image, imagej=True,
                         resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    s = Settings(**FAST, run={"denoise": "none", "segment": False})
    m = process_image(tmp_path / "in" / "clipped.tif", tmp_path / "out", s)
    res = open_result_store(m["store"])
    rec = res["attrs"]["planes"][0]["saturation"]
    assert rec["pixels"] == (clipped == ceiling).sum()
    assert rec["channels"][0]["ceiling"] == ceiling
    assert "saturated" in _flags(m["store"])
    lam = np.asarray(res["rates"][0])
    support = Mollifier(0.06, 0.02, ChromatinModel().derivatives).support_px
    near = ndimage.binary_dilation(clipped == ceiling, iterations=support)
    assert not np.isfinite(lam[near]).any()
    far = ~ndimage.binary_dilation(near, iterations=2 * support)
    far[: 2 * support] = far[-2 * support:] = False
    far[:, : 2 * support] = far[:, -2 * support:] = False
    assert np.isfinite(lam[far]).mean() > 0.95
    free = process_image(tmp_path / "in" / "free.tif", tmp_path / "out", s)
    assert open_result_store(free["store"])["attrs"]["planes"][0]["saturation"]["pixels"] == 0
    assert "saturated" not in _flags(free["store"])


def _camera_field(seed: int) -> np.ndarray:
    """A 256 px camera image (Poisson photons, 2 ADU of read noise, offset 100) of smooth
    structure: its noise is independent from pixel to pixel."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    pattern = gaussian_filter(rng.normal(size=(256, 256)), 6.0, mode="wrap")
    photons = 400.0 * (1.0 + 0.5 * pattern / pattern.std()).clip(0.2)
    return rng.poisson(photons) + rng.normal(100.0, 2.0, photons.shape)


@pytest.mark.parametrize("how", ["raw", "gaussian 1 px", "median 3x3"])
def test_correlated_noise_flags_a_smoothed_camera_image(tmp_path, how):
    """A camera's noise is white: the raw image is not flagged; the same image smoothed
    (Gaussian of 1 px) or median-filtered (3 x 3) before the run is, from the noise model the
    fit recorded."""
    from scipy.ndimage import gaussian_filter, median_filter

    image = _camera_field(5)
    if how == "gaussian 1 px":
        image = gaussian_filter(image, 1.0)
    elif how == "median 3x3":
        image = median_filter(image, size=3)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "cell.tif", np.rint(image).astype(np.uint16),
                     imagej=True, resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    m = process_image(tmp_path / "in" / "cell.tif", tmp_path / "out", Settings(
        **FAST, run={"denoise": "none", "segment": False}))
    flags = _flags(m["store"])
    assert ("correlated-noise" in flags) == (how != "raw"), flags
    assert "correlated-noise" in FLAGS
