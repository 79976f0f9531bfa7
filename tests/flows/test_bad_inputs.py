"""Bad inputs lose nothing and explain themselves (issue 7).

One ``chromarate run`` (a real Prefect flow, real TIFFs and zarr) over a folder that holds
every kind of broken file beside two good ones: each bad file is listed in ``run.json``
"failed" with a reason that names it and says what to do, the good ones finish, and no input
byte changes. A second run into the same folder with other settings recomputes the good images
and mixes nothing of the first run into its summaries. Folder-level refusals (no TIFF, an
output that cannot be written, an output another run holds) stop before any flow starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from flows.cli import EXIT_SOME_FAILED, EXIT_USAGE, main
from flows.outdir import out_lock
from pipeline import process
from pipeline.config import Settings
from pipeline.io import InputError, write_tiff
from pipeline.simulate import simulate_folder

PX = 0.02
GOOD = ("good.tif", "small_good.tif")  # 64² and 24²: both smaller than one 256-px tile
# file -> (words of the reason, words of the hint); every reason must also name the file
BAD = {
    "zero.tif": ("empty (0 bytes)", "export the file again"),
    "text.tif": ("not a readable TIFF", "renamed .tif"),
    "truncated.tif": ("truncated", "export the file again"),
    "corrupt.tif": ("damaged", "export the file again"),
    "huge_declared.ome.tif": ("truncated", "export the file again"),
    "rgb.tif": ("colour image (RGB)", "one grey-level image per channel"),
    "three_channels.tif": ("but the image has 3", "one word per channel (chromatin, heterochromatin or ignore)"),
    "one_channel.tif": ("the image has 1", "Run files with this channel count separately"),
    "unknown_axes.tif": ("unknown axis 'Q'", "Re-save it as OME-TIFF"),
    "inf.tif": ("holds 2 infinite pixel value(s)", "Replace them"),
    "constant.tif": ("constant", "Pass --calibration"),
    "no_pixel_size.tif": ("no pixel size", "Pass --pixel-size"),
    "tiny.tif": ("6 x 6 pixels", "at least 16 x 16"),
    "raw_movie.tif": ("600 T planes of 32 x 32 camera pixels (0.16 µm)", "chromarate render TABLE"),
}
IGNORED = ("notes.txt", "readme.md", "preview.png")  # not TIFFs: never read, never listed


def _sha256(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _corpus(root: Path) -> Path:
    """The good images (simulated, two channels) and one file of every bad kind."""
    src = simulate_folder(root / "sim", truth_dir=root / "truth", shape=(64, 64),
                          cases=[("smooth", 2)], seed=3)[0]
    small = simulate_folder(root / "sim24", truth_dir=root / "truth24", shape=(24, 24),
                            cases=[("smooth", 2)], seed=3)[0]
    d = root / "images"
    d.mkdir()
    shutil.copy(src, d / "good.tif")
    shutil.copy(small, d / "small_good.tif")
    rng = np.random.default_rng(0)
    two = (rng.random((2, 64, 64)) * 1000 + 100).astype(np.float32)
    (d / "zero.tif").write_bytes(b"")
    (d / "text.tif").write_text("exported from a spreadsheet, not an image\n")
    (d / "truncated.tif").write_bytes((d / "good.tif").read_bytes()[:-5000])
    corrupt = bytearray((d / "good.tif").read_bytes())
    corrupt[4:8] = (2**31 - 1).to_bytes(4, "little")  # first-IFD offset past the end
    (d / "corrupt.tif").write_bytes(bytes(corrupt))
    huge = d / "huge_declared.ome.tif"  # declares 2 x 40000² (6.4 GB); holds 64 KiB
    tifffile.imwrite(huge, shape=(2, 40000, 40000), dtype=np.uint16, ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": PX, "PhysicalSizeY": PX})
    os.truncate(huge, 1 << 16)
    tifffile.imwrite(d / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    write_tiff(d / "three_channels.tif", np.concatenate([two, two[:1]]), axes="CYX",
               pixel_size_um=PX)
    write_tiff(d / "one_channel.tif", two[:1], axes="CYX", pixel_size_um=PX)
    tifffile.imwrite(d / "unknown_axes.tif", np.zeros((3, 2, 64, 64), np.uint16),
                     photometric="minisblack")
    inf = two.copy()
    inf[0, 9, 9], inf[1, 0, 0] = np.inf, -np.inf
    write_tiff(d / "inf.tif", inf, axes="CYX", pixel_size_um=PX)
    write_tiff(d / "constant.tif", np.full((2, 64, 64), 500, np.uint16), axes="CYX",
               pixel_size_um=PX)
    tifffile.imwrite(d / "no_pixel_size.tif", two, metadata={"axes": "CYX"})
    write_tiff(d / "tiny.tif", two[:, :6, :6], axes="CYX", pixel_size_um=PX)
    rng = np.random.default_rng(5)  # a raw STORM movie: blinking frames at camera pixels
    write_tiff(d / "raw_movie.tif", rng.poisson(100, (600, 32, 32)).astype(np.uint16),
               axes="TYX", pixel_size_um=0.16)
    for name in IGNORED:
        (d / name).write_text("not an image")
    assert sorted(p.name for p in d.iterdir()) == sorted((*GOOD, *BAD, *IGNORED))
    return d


def _run(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(folder), "--out", str(out), "--channels", "chromatin,heterochromatin",
            *extra]


@pytest.fixture(scope="module")
def runs(prefect_api, tmp_path_factory):
    """Run 1 over the corpus; then run 2 (another --delta, --overwrite) into the same folder."""
    root = tmp_path_factory.mktemp("bad")
    images, out = _corpus(root), root / "out"
    before = _sha256(images)
    rc1 = main(_run(images, out, "--delta", "0.1", "--window", "0.1"))
    first = json.loads((out / "run.json").read_text())
    keys1 = {Path(i["image"]).name: i["key"] for i in first["images"]}
    # a store whose input left the folder since: it must not enter run 2's summaries
    shutil.copytree(out / "good.ome.zarr", out / "removed_image.ome.zarr")
    rc2 = main(_run(images, out, "--delta", "0.12", "--window", "0.1", "--overwrite"))
    second = json.loads((out / "run.json").read_text())
    return {"images": images, "out": out, "before": before, "after": _sha256(images),
            "rc": (rc1, rc2), "runs": (first, second), "keys1": keys1}


def test_each_bad_file_is_named_with_a_hint_and_the_good_ones_finish(runs):
    first, _ = runs["runs"]
    assert runs["rc"][0] == EXIT_SOME_FAILED
    assert sorted(Path(i["image"]).name for i in first["images"]) == sorted(GOOD)
    assert all(not i["skipped"] for i in first["images"])
    failed = {Path(f["image"]).name: f["reason"] for f in first["failed"]}
    assert sorted(failed) == sorted(BAD), "each bad file fails once; non-TIFFs are ignored"
    for name, (reason, hint) in BAD.items():
        text = failed[name]
        assert name in text.split(":")[0], f"{name}: reason does not name it: {text}"
        assert reason in text and hint in text, f"{name}: {text}"
        assert "Traceback" not in text
    for name in GOOD:
        assert (runs["out"] / name.replace(".tif", ".ome.zarr")).is_dir()
    summary = pd.read_csv(runs["out"] / "summary_images.csv")
    assert sorted(summary["file"]) == sorted(GOOD)
    for name in BAD:  # nothing written for a failed image, and no leftovers
        assert not (runs["out"] / name.replace(".tif", ".ome.zarr")).exists()
    assert not list(runs["out"].rglob("*.partial-*"))
    assert not list((runs["out"] / ".chromarate" / "work").iterdir())


def test_inputs_are_never_modified(runs):
    assert runs["after"] == runs["before"]  # same names, same sha256, nothing added


def test_rerun_with_other_settings_recomputes_and_mixes_nothing(runs):
    _, second = runs["runs"]
    out = runs["out"]
    assert runs["rc"][1] == EXIT_SOME_FAILED
    assert sorted(Path(f["image"]).name for f in second["failed"]) == sorted(BAD)
    recs = {Path(i["image"]).name: i for i in second["images"]}
    assert sorted(recs) == sorted(GOOD)
    for name, rec in recs.items():
        assert not rec["skipped"] and rec["key"] != runs["keys1"][name]  # recomputed
        attrs = zarr.open_group(rec["store"], mode="r").attrs["chromarate"]
        assert attrs["key"] == rec["key"]
        assert attrs["settings"]["estimator"]["delta_um"] == 0.12
    summary = pd.read_csv(out / "summary_images.csv")
    assert sorted(summary["file"]) == sorted(GOOD)  # not removed_image, no first-run rows
    assert len(pd.read_csv(out / "summary_tiles.csv")["file"].unique()) == len(GOOD)
    assert second["settings"]["estimator"]["delta_um"] == 0.12
    assert (out / "removed_image.ome.zarr").is_dir()  # an old result is never deleted


def test_cli_output_names_failures_and_foreign_results(prefect_api, tmp_path, capsys):
    """The console lines (stderr): a failed line per bad file, and the foreign-store note."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "broken.tif").write_text("not a tiff")
    out = tmp_path / "out"
    (out / "old.ome.zarr").mkdir(parents=True)
    rc = main(["run", str(d), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_SOME_FAILED
    assert f"failed broken.tif: {d / 'broken.tif'}: not a readable TIFF" in err  # one line and "renamed .tif" in err
    assert "run.json" in err and "run the same command again" in err
    assert "not from this run" in err and "old.ome.zarr" in err


# ---- folder-level refusals: exit 2 before any flow runs (no Prefect server needed) ----


def test_empty_or_tiffless_folder_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", str(empty), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(empty) in err and "holds no .tif or .tiff file" in err and "--recursive" in err
    (empty / "notes.txt").write_text("x")
    assert main(["run", str(empty), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "holds no .tif" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "nope: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _one_good(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    write_tiff(d / "a.tif", np.ones((32, 32), np.uint16), axes="YX", pixel_size_um=PX)
    return d


@pytest.mark.parametrize("kind", ["file", "under_a_file", "read_only"])
def test_unwritable_output_exits_2(tmp_path, capsys, kind):
    d = _one_good(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    if kind == "file":
        out, words = blocker, "is a file, not a folder"
    elif kind == "under_a_file":
        out, words = blocker / "results", "cannot be written"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0o500; the other variants cover this")
        out, words = tmp_path / "ro", "cannot be written"
        out.mkdir()
        out.chmod(0o500)
    try:
        rc = main(["run", str(d), "--out", str(out)])
    finally:
        if kind == "read_only":
            out.chmod(0o700)
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE
    assert str(out) in err and words in err and "--out" in err
    assert blocker.read_text() == "a file"
    assert not list(tmp_path.rglob("run.json"))


def test_a_second_run_into_the_same_output_is_refused(tmp_path, capsys):
    d, out = _one_good(tmp_path), tmp_path / "out"
    out.mkdir()
    with out_lock(out):  # what a run in progress holds
        assert main(["run", str(d), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"another chromarate run (pid {os.getpid()})" in err and str(out) in err
    assert not (out / "run.json").exists()
    with out_lock(out):  # released: the next run may take it
        pass


# ---- pipeline-level: a failure the code did not foresee still names the file ----


def test_unforeseen_stage_failure_names_the_image(tmp_path):
    d = _one_good(tmp_path)
    settings = Settings()
    manifest = process.ingest(d / "a.tif", tmp_path / "out", settings)
    work = Path(manifest["work"])
    work.parent.mkdir(parents=True, exist_ok=True)
    work.write_text("not a folder")  # the stage cannot make its work folder: unforeseen
    with pytest.raises(process.ImageError) as err:
        process.fit_image(manifest, settings, str(tmp_path / "missing.zarr"))
    text = str(err.value)
    assert text.startswith(f"{manifest['image']}: the fit stage failed (")
    assert "-v" in text
    again = pickle.loads(pickle.dumps(err.value))  # crosses dask process boundaries
    assert str(again) == text and again.stage == "fit"
    three = write_tiff(d / "a3.tif", np.ones((3, 32, 32), np.uint16), axes="CYX",
                       pixel_size_um=PX)
    with pytest.raises(InputError) as refused:  # no --channels: 3 channels is still refused
        process.ingest(three, tmp_path / "out", settings)
    assert str(refused.value).startswith(f"{three}: the image has 3 channels")
    assert "--channels chromatin,heterochromatin,ignore" in str(refused.value)


def test_refused_inputs_are_not_retried():
    """Prefect's retry check on the states it builds from a task's exception."""
    from prefect.states import Failed

    from flows.tasks import _OPTS

    retry = _OPTS["retry_condition_fn"]
    assert retry(None, None, Failed(data=InputError("a.tif", "it is RGB", "Split it"))) is False
    assert retry(None, None, Failed(data=OSError("disk unplugged"))) is True
    assert retry(None, None, Failed(data=process.ImageError("a.tif", "fit", "x"))) is True


def test_same_store_name_is_refused_not_mixed(tmp_path):
    """``a.tif`` and ``a.tiff`` would write one store: the second is failed with a reason."""
    from flows.flow import _one_image_per_store

    images = [tmp_path / "a.tif", tmp_path / "a.tiff", tmp_path / "sub" / "a.tif",
              tmp_path / "b.tif"]
    keep, failed = _one_image_per_store(images, tmp_path / "out")
    assert keep == [images[0], images[3]]
    assert [f["image"] for f in failed] == [str(images[1]), str(images[2])]
    assert all("a.ome.zarr" in f["reason"] and "rename" in f["reason"] for f in failed)


def test_a_long_stack_of_super_resolution_planes_is_not_a_raw_movie(tmp_path):
    """600 planes at 0.02 µm are a stack to fit, not a raw acquisition; at 0.16 µm they are
    refused (the boundary is the pixel size, not the plane count alone)."""
    data = np.ones((600, 32, 32), np.uint16)
    rendered = write_tiff(tmp_path / "a" / "z.tif", data, axes="ZYX", pixel_size_um=PX)
    assert process.ingest(rendered, tmp_path / "out", Settings()).n_planes == 600
    movie = write_tiff(tmp_path / "b" / "t.tif", data[:499], axes="TYX", pixel_size_um=0.16)
    assert process.ingest(movie, tmp_path / "out2", Settings()).n_planes == 499

