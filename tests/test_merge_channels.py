"""chromarate merge-channels: channels saved as separate files become one CYX TIFF per image."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from flows.cli import main
from pipeline.io import InputError, inspect_tiff, read_planes, write_tiff
from pipeline.merge_channels import merge_folder, merge_pair


def _write(path: Path, data: np.ndarray, axes: str = "YX", px: float = 0.02, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiff(path, data, axes=axes, pixel_size_um=px, **kw)


def test_pairs_are_merged_in_suffix_order_and_inputs_untouched(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    chrom = rng.integers(0, 4000, (40, 48), dtype=np.uint16)
    het = rng.integers(0, 4000, (40, 48), dtype=np.uint16)
    _write(raw / "cell 1_DAPI.tif", chrom)
    _write(raw / "cell 1_H3K9.tif", het)
    _write(raw / "cell 2_DAPI.tif", chrom)  # its partner is missing
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    res = merge_folder(raw, ("_DAPI", "_H3K9"), tmp_path / "merged")
    assert [p.name for p in res.written] == ["cell 1.ome.tif"]
    assert [p.name for p in res.unpaired] == ["cell 2_DAPI.tif"] and not res.refused
    info = inspect_tiff(res.written[0])
    assert (info.axes, info.n_channels, info.pixel_size_um) == ("CYX", 2, pytest.approx(0.02))
    merged = read_planes(res.written[0], info).compute()[0]
    np.testing.assert_array_equal(merged[0], chrom)  # the first suffix is channel 0
    np.testing.assert_array_equal(merged[1], het)
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before
    assert info.channel_names == ("DAPI", "H3K9")  # named after the suffixes


def test_z_stacks_keep_their_planes_and_step(tmp_path):
    a = np.arange(3 * 32 * 32, dtype=np.uint16).reshape(3, 32, 32)
    _write(tmp_path / "s_c0.ome.tif", a, axes="ZYX", z_step_um=0.25)
    _write(tmp_path / "s_c1.ome.tif", a + 1, axes="ZYX", z_step_um=0.25)
    out = merge_pair([tmp_path / "s_c0.ome.tif", tmp_path / "s_c1.ome.tif"],
                     tmp_path / "m" / "s.ome.tif")
    info = inspect_tiff(out)
    assert (info.axes, info.n_planes, info.z_step_um) == ("ZCYX", 3, pytest.approx(0.25))
    planes = read_planes(out, info).compute()
    np.testing.assert_array_equal(planes[:, 1], a + 1)


def test_mismatched_pairs_are_refused_naming_both_files(tmp_path):
    raw = tmp_path / "raw"
    _write(raw / "a_c0.tif", np.ones((32, 32), np.uint16))
    _write(raw / "a_c1.tif", np.ones((32, 40), np.uint16))
    _write(raw / "b_c0.tif", np.ones((32, 32), np.uint16), px=0.02)
    _write(raw / "b_c1.tif", np.ones((32, 32), np.uint16), px=0.03)
    _write(raw / "c_c0.tif", np.ones((2, 32, 32), np.uint16), axes="CYX")
    _write(raw / "c_c1.tif", np.ones((32, 32), np.uint16))
    res = merge_folder(raw, ("_c0", "_c1"), tmp_path / "merged")
    assert not res.written
    text = "\n".join(res.refused)
    assert "a_c0.tif and a_c1.tif differ in layout" in text
    assert "b_c0.tif and b_c1.tif differ in pixel size (0.02, 0.03 µm)" in text
    assert "c_c0.tif: it has 2 channels" in text
    assert not list((tmp_path / "merged").iterdir())  # nothing half-written


def test_refuses_writing_into_the_input_folder_and_bad_suffixes(tmp_path):
    _write(tmp_path / "a_c0.tif", np.ones((32, 32), np.uint16))
    with pytest.raises(InputError, match="the output folder is the input folder"):
        merge_folder(tmp_path, ("_c0", "_c1"), tmp_path)
    with pytest.raises(InputError, match="two or more, distinct"):
        merge_folder(tmp_path, ("_c0", "_c0"), tmp_path / "m")


def test_cli_merges_then_run_reads_two_channels(tmp_path, capsys):
    """The command as a user types it, then `chromarate run` on its output: a two-channel fit."""
    from pipeline.simulate import simulate_folder

    paths = simulate_folder(tmp_path / "sim", truth_dir=tmp_path / "truth",
                            cases=[("lognormal", 2)], shape=(64, 64), seed=3)
    image = tifffile.imread(paths[0])  # (2, Y, X), chromatin first
    px = inspect_tiff(paths[0]).pixel_size_um
    (tmp_path / "raw").mkdir()
    for k, name in enumerate(("DAPI", "H3K9me3")):  # plain TIFFs, no metadata: --pixel-size
        tifffile.imwrite(tmp_path / "raw" / f"n1_{name}.tif", image[k])
    rc = main(["merge-channels", str(tmp_path / "raw"), "--out", str(tmp_path / "merged"),
               "--suffixes", "_DAPI,_H3K9me3", "--pixel-size", str(px)])
    out = capsys.readouterr().out
    assert rc == 0 and "1 image(s) merged" in out
    merged = tmp_path / "merged" / "n1.ome.tif"
    np.testing.assert_array_equal(tifffile.imread(merged), image)
    rc = main(["run", str(tmp_path / "merged"), "--out", str(tmp_path / "res"),
               "--method", "closed-form", "--delta", "0.06", "--window", "0.06",
               "--denoise", "none", "--workers", "1"])
    assert rc == 0
    import pandas as pd

    row = pd.read_csv(tmp_path / "res" / "summary_images.csv").iloc[0]
    assert row["channel_model"] == "two-channel" and row["channels"] == "chromatin,heterochromatin"
    # suffixes given mark first: the channels are named after them, so the run reads the
    # roles from the names (heterochromatin first) and fits the same λ
    rc = main(["merge-channels", str(tmp_path / "raw"), "--out", str(tmp_path / "rev"),
               "--suffixes", "_H3K9me3,_DAPI", "--pixel-size", str(px)])
    assert rc == 0
    rc = main(["run", str(tmp_path / "rev"), "--out", str(tmp_path / "res_rev"),
               "--method", "closed-form", "--delta", "0.06", "--window", "0.06",
               "--denoise", "none", "--workers", "1"])
    rev = pd.read_csv(tmp_path / "res_rev" / "summary_images.csv").iloc[0]
    assert rc == 0 and rev["channels"] == "heterochromatin,chromatin"
    assert rev["lambda_median"] == pytest.approx(row["lambda_median"], rel=1e-6)

