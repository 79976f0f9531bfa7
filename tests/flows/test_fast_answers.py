"""Fast answers (issue 15): an up-to-date re-run, and files refused at inspection, are
answered before Prefect starts: the CLI does not even import it, and each refusal is one
line. The first run goes through a running Prefect server (``PREFECT_API_URL``: the way
users who run often skip Prefect's start-up); the later ones point ``PREFECT_API_URL`` at a
port where nothing listens, so any contact with Prefect would fail them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from pipeline.io import write_tiff
from pipeline.simulate import simulate_folder

FAST = ["--method", "closed-form", "--denoise", "none", "--delta", "0.1", "--window", "0.1"]
# runs the CLI, then says whether Prefect was imported
PROBE = ("import sys; from flows.cli import main; rc = main(sys.argv[1:]); "
         "print('prefect imported:', 'prefect' in sys.modules); sys.exit(rc)")


def _cli(args: list[str], api_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api_url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def folder(prefect_api, tmp_path_factory):
    """Two images, run once through the test's Prefect server (a server already running)."""
    root = tmp_path_factory.mktemp("fast")
    simulate_folder(root / "images", truth_dir=root / "truth", shape=(48, 48),
                    cases=[("smooth", 2), ("step", 1)], seed=2)
    first = _cli(["run", str(root / "images"), "--out", str(root / "out"), *FAST], prefect_api)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "prefect imported: True" in first.stdout
    return root


NOWHERE = "http://127.0.0.1:9/api"  # the discard port: no Prefect server there


def test_up_to_date_rerun_does_not_start_prefect(folder):
    again = _cli(["run", str(folder / "images"), "--out", str(folder / "out"), *FAST], NOWHERE)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "prefect imported: False" in again.stdout
    assert again.stderr.count("skipped (up to date)") == 2
    assert "2 image(s) finished (2 up to date), 0 failed" in again.stderr


def test_refused_files_are_reported_once_before_prefect(folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(folder / "images", images)
    two = np.full((2, 48, 48), 300, np.uint16)
    (images / "broken.tif").write_text("not a tiff")
    ome = (folder / "images" / "smooth_2ch_s2.tif").read_bytes()
    (images / "truncated.tif").write_bytes(ome[:-300])  # its OME-XML cut: tifffile logs it
    tifffile.imwrite(images / "no_pixel_size.tif", two, metadata={"axes": "CYX"})
    write_tiff(images / "three.tif", np.concatenate([two, two[:1]]), axes="CYX",
               pixel_size_um=0.02)
    out = tmp_path / "out"
    shutil.copytree(folder / "out", out)
    res = _cli(["run", str(images), "--out", str(out), *FAST], NOWHERE)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "prefect imported: False" in res.stdout
    err = res.stderr
    for name, words in (("broken.tif", "not a readable TIFF"),
                        ("no_pixel_size.tif", "no pixel size"),
                        ("three.tif", "the image has 3 channels"),
                        ("truncated.tif", "the file is damaged or truncated (tifffile:")):
        line = f"failed {name}: {images / name}: {words}"
        assert err.count(line) == 1, err
        assert err.count(str(images / name)) == 1, err  # named once: no Prefect log line
    # nothing else: no Prefect log line, no tifffile log line about the damage
    assert "Traceback" not in err and "Finished in state" not in err
    assert "ERROR" not in err
    assert "2 image(s) finished (2 up to date), 4 failed" in err


def test_channel_mismatch_is_reported_before_prefect(folder, tmp_path):
    res = _cli(["run", str(folder / "images" / "step_1ch_s2.tif"), "--out", str(tmp_path / "o"),
                "--channels", "chromatin,heterochromatin", *FAST], NOWHERE)
    assert res.returncode == 1 and "prefect imported: False" in res.stdout
    assert res.stderr.count("names 2 channel(s) (chromatin,heterochromatin) but the image "
                            "has 1") == 1, res.stderr


def test_bad_flag_exits_2_at_once(tmp_path):
    res = _cli(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--method", "magic"],
               NOWHERE)
    assert res.returncode == 2 and "invalid choice: 'magic'" in res.stderr
    assert not (tmp_path / "o").exists()


def test_a_stage_failure_is_reported_once(prefect_api, tmp_path):
    """A problem only the pixels show (an infinite value) fails in a Prefect task: still one
    line, without Prefect's own lines about the failed task (shown with -v)."""
    rng = np.random.default_rng(0)
    data = (rng.random((2, 48, 48)) * 1000 + 100).astype(np.float32)
    data[1, 5, 7] = np.inf
    (tmp_path / "in").mkdir()
    path = write_tiff(tmp_path / "in" / "inf.tif", data, axes="CYX", pixel_size_um=0.02)
    res = _cli(["run", str(path.parent), "--out", str(tmp_path / "out"), *FAST], prefect_api)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "prefect imported: True" in res.stdout
    assert res.stderr.count(str(path)) == 1, res.stderr
    assert f"failed inf.tif: {path}: plane 0 holds 1 infinite" in res.stderr
    assert "Finished in state" not in res.stderr and "Traceback" not in res.stderr
