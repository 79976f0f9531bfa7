"""Channel roles from the names a file gives its channels (OME Channel Name, ImageJ Labels)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.channels import role_from_name
from pipeline.config import Settings
from pipeline.io import inspect_tiff, open_result_store
from pipeline.process import process_image
from pipeline.simulate import simulate_folder
from pipeline.summary import store_notes, summarize_store

FAST = {"method": "closed-form", "estimator": {"delta_um": 0.06, "window_um": 0.06},
        "run": {"denoise": "none"}}


@pytest.fixture(scope="module")
def two_channel(tmp_path_factory):
    root = tmp_path_factory.mktemp("named")
    path = simulate_folder(root / "sim", truth_dir=root / "truth", cases=[("lognormal", 2)],
                           shape=(128, 128), seed=4)[0]
    return root, tifffile.imread(path), inspect_tiff(path).pixel_size_um


def _ome(path: Path, data: np.ndarray, px: float, names=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    md = {"axes": "CYX", "PhysicalSizeX": px, "PhysicalSizeY": px}
    if names:
        md["Channel"] = {"Name": list(names)}
    tifffile.imwrite(path, data, ome=True, metadata=md)
    return path


def _lam(path: Path, out: Path, **kw):
    m = process_image(path, out, Settings(**FAST, **kw))
    res = open_result_store(m["store"])
    return np.asarray(res["rates"])[0], m["store"]  # (mean, std) x Y x X


def test_names_put_swapped_channels_back(two_channel, tmp_path):
    """A file that stores heterochromatin first and says so gets the λ of the same image in
    the default order; unnamed, the swapped file is read chromatin-first (another λ, or
    none)."""
    root, img, px = two_channel
    ref, _ = _lam(_ome(tmp_path / "a" / "ref.ome.tif", img, px), tmp_path / "o1")
    named = _ome(tmp_path / "b" / "sw.ome.tif", img[::-1], px, ("H3K9me3-AF647", "DAPI"))
    assert inspect_tiff(named).channel_names == ("H3K9me3-AF647", "DAPI")
    lam, store = _lam(named, tmp_path / "o2")
    np.testing.assert_allclose(lam, ref, rtol=1e-6, equal_nan=True)
    row = summarize_store(store)["images"].iloc[0]
    assert row["channels"] == "heterochromatin,chromatin"
    _, notes = store_notes(store)
    assert any("read as heterochromatin,chromatin" in n for n in notes)
    unnamed, _ = _lam(_ome(tmp_path / "c" / "sw.ome.tif", img[::-1], px), tmp_path / "o3")
    ok = np.isfinite(unnamed) & np.isfinite(ref)  # another λ, or none where it is not fitted
    assert np.isfinite(ref).sum() > 1000
    assert ok.sum() < 0.5 * np.isfinite(ref).sum() or not np.allclose(unnamed[ok], ref[ok],
                                                                        rtol=0.05)


def test_channels_flag_wins_and_says_so(two_channel, tmp_path):
    root, img, px = two_channel
    named = _ome(tmp_path / "sw.ome.tif", img[::-1], px, ("heterochromatin", "chromatin"))
    _, store = _lam(named, tmp_path / "o", channels=["chromatin", "heterochromatin"])
    assert summarize_store(store)["images"].iloc[0]["channels"] == "chromatin,heterochromatin"
    _, notes = store_notes(store)
    assert any("--channels chromatin,heterochromatin was used" in n for n in notes)


def test_names_that_say_nothing_keep_the_default(two_channel, tmp_path):
    root, img, px = two_channel
    for names in (("Cy5", "Alexa 488"), ("DAPI", "Hoechst"), None):  # no role, or one role
        path = _ome(tmp_path / f"{names}" / "x.ome.tif", img, px, names)
        _, store = _lam(path, tmp_path / f"o{names}")
        assert summarize_store(store)["images"].iloc[0]["channels"] == \
            "chromatin,heterochromatin"
        assert not any("names its channels" in n for n in store_notes(store)[1])


def test_imagej_labels_are_names(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((2, 32, 32), np.uint16), imagej=True, resolution=(50, 50),
                     metadata={"axes": "CYX", "unit": "um", "Labels": ["HP1a", "H2B-GFP"]})
    names = inspect_tiff(path).channel_names
    assert names == ("HP1a", "H2B-GFP")
    assert Settings().channel_roles(2, names)[:2] == (("heterochromatin", "chromatin"),
                                                      "channel names")


def test_role_keywords():
    assert role_from_name("heterochromatin (H3K9me3)") == "heterochromatin"
    assert role_from_name("Chromatin") == "chromatin"
    assert role_from_name("SiR-DNA") == "chromatin"
    assert role_from_name("mCherry") is None


def test_a_third_channel_named_otherwise_is_not_read(two_channel, tmp_path):
    """DAPI and H3K9me3 beside a third stain: the named two are read (the third is not), and
    λ is that of the two-channel file."""
    root, img, px = two_channel
    ref, _ = _lam(_ome(tmp_path / "a" / "ref.ome.tif", img, px), tmp_path / "o1")
    third = (img[0] // 3 + 50).astype(img.dtype)
    three = _ome(tmp_path / "b" / "x.ome.tif", np.stack([third, img[1], img[0]]), px,
                 ("Tubulin-488", "H3K9me3", "DAPI"))
    lam, store = _lam(three, tmp_path / "o2")
    np.testing.assert_allclose(lam, ref, rtol=1e-6, equal_nan=True)
    assert open_result_store(store)["attrs"]["channels_read"] == [1, 2]
    _, notes = store_notes(store)
    assert any("0 ('Tubulin-488') not" in n for n in notes)


def test_three_unnamed_channels_need_channels_with_ignore(two_channel, tmp_path):
    from pipeline.io import InputError

    root, img, px = two_channel
    ref, _ = _lam(_ome(tmp_path / "a" / "ref.ome.tif", img, px), tmp_path / "o1",
                  calibration=[{"offset": 100, "scale": 0.001}] * 2)
    three = _ome(tmp_path / "b" / "x.ome.tif", np.stack([img[1], img[1] // 2, img[0]]), px)
    with pytest.raises(InputError, match="--channels chromatin,heterochromatin,ignore"):
        _lam(three, tmp_path / "o2")
    with pytest.raises(InputError, match="names 2 channel"):
        _lam(three, tmp_path / "o3", channels=["chromatin", "heterochromatin"])
    lam, store = _lam(three, tmp_path / "o4", channels=["heterochromatin", "ignore",
                                                        "chromatin"],
                      calibration=[{"offset": 100, "scale": 0.001}] * 2)
    np.testing.assert_allclose(lam, ref, rtol=1e-6, equal_nan=True)
    assert open_result_store(store)["attrs"]["channels_read"] == [0, 2]


@pytest.mark.parametrize("channels, message", [
    (["chromatin", "chromatin", "ignore"], "two distinct roles"),
    (["ignore", "ignore"], "one role or two"),
    (["chromatin", "ignore"], "single channel must be 'heterochromatin'"),
    (["dna", "heterochromatin"], "'chromatin', 'heterochromatin' or 'ignore'"),
])
def test_channels_refused(channels, message):
    with pytest.raises(ValueError, match=message):
        Settings(channels=channels)


def test_calibration_pairs_count_the_channels_read():
    pair = {"offset": 100, "scale": 0.001}
    Settings(channels=["chromatin", "ignore", "heterochromatin"], calibration=[pair] * 2)
    with pytest.raises(ValueError, match="3 calibration pair"):
        Settings(channels=["chromatin", "ignore", "heterochromatin"], calibration=[pair] * 3)


def test_parse_channels_with_ignore():
    from pipeline.config_parse import parse_channels

    assert parse_channels("Chromatin, ignore,heterochromatin") == (
        "chromatin", "ignore", "heterochromatin")
    with pytest.raises(ValueError, match="use chromatin, heterochromatin or ignore"):
        parse_channels("chromatin,skip")


def test_imagej_hyperstack_labels_name_the_channels(tmp_path):
    """Fiji labels every slice of a hyperstack (channels fastest): the repeating labels name
    the channels; labels that do not repeat name none."""
    path = tmp_path / "zc.tif"
    data = np.zeros((3, 2, 32, 32), np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(50, 50), metadata={
        "axes": "ZCYX", "unit": "um", "Labels": ["H3K9me3", "DAPI"] * 3})
    assert inspect_tiff(path).channel_names == ("H3K9me3", "DAPI")
    tifffile.imwrite(path, data, imagej=True, resolution=(50, 50), metadata={
        "axes": "ZCYX", "unit": "um", "Labels": [f"z{i}" for i in range(6)]})
    assert inspect_tiff(path).channel_names is None


def test_reference_frames_with_all_the_files_channels(two_channel, tmp_path):
    """A dark frame and a flat field recorded like the image, with all three of its channels,
    are read on the two channels read: λ equals that of the two-channel file with the
    two-channel frames (a dark level or gain from the wrong channel would change it)."""
    root, img, px = two_channel
    yy, xx = np.mgrid[: img.shape[1], : img.shape[2]] / img.shape[1]
    beam = [1.0 - 0.4 * (yy - 0.5) ** 2, 1.0 - 0.3 * (xx - 0.5) ** 2, 0.5 + yy]  # per channel
    dark = [110.0, 90.0, 700.0]  # DAPI, H3K9me3, Tubulin
    flat = [d + 3000.0 * b for d, b in zip(dark, beam, strict=True)]

    def frames(name, order):
        d = _write_tiff(tmp_path / name / "dark.tif",
                        np.stack([np.full(img.shape[1:], dark[k]) for k in order]))
        f = _write_tiff(tmp_path / name / "flat.tif", np.stack([flat[k] for k in order]))
        return {"dark_frame": d, "flat_field": f}

    ref, _ = _lam(_ome(tmp_path / "a" / "ref.ome.tif", img, px), tmp_path / "o1",
                  **frames("two", [0, 1]))
    third = (img[0] // 3 + 700).astype(img.dtype)
    three = _ome(tmp_path / "b" / "x.ome.tif", np.stack([third, img[1], img[0]]), px,
                 ("Tubulin-488", "H3K9me3", "DAPI"))
    lam, store = _lam(three, tmp_path / "o2", **frames("three", [2, 1, 0]))
    assert np.isfinite(ref).sum() > 1000
    np.testing.assert_allclose(lam, ref, rtol=1e-5, equal_nan=True)
    assert open_result_store(store)["attrs"]["channels_read"] == [1, 2]


def _write_tiff(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(data, np.float32), photometric="minisblack")
    return path
