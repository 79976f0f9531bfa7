"""Results are never replaced silently (issue 15): a run into a folder that holds results made
with other settings is refused (exit 2, naming each differing setting) and writes nothing,
unless ``--overwrite``; an output folder inside the input folder is refused too."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import zarr

from flows.cli import EXIT_OK, EXIT_USAGE, main
from flows.outdir import settings_differences
from pipeline.config import Settings
from pipeline.simulate import simulate_folder

FAST = ["--method", "closed-form", "--denoise", "none", "--window", "0.1"]


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (results, tables, run.json, lock, work folders)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def done(prefect_api, tmp_path_factory):
    """One finished run (delta 0.1 um) of one 64² two-channel image."""
    root = tmp_path_factory.mktemp("protect")
    simulate_folder(root / "images", truth_dir=root / "truth", shape=(64, 64),
                    cases=[("smooth", 2)], seed=5)
    out = root / "out"
    assert main(["run", str(root / "images"), "--out", str(out), "--delta", "0.1", *FAST]) == 0
    return root


def test_other_settings_are_refused_and_nothing_changes(done, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(done / "out", out)
    before = _hashes(out)
    rc = main(["run", str(done / "images"), "--out", str(out), "--delta", "0.12", "--seed",
               "3", *FAST])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE
    assert f"{out}: it holds results made with other settings" in err
    assert "estimator.delta_um = 0.12 now, 0.1 in run.json, smooth_2ch_s5.ome.zarr" in err
    assert "seed = 3 now, 0 in run.json" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert _hashes(out) == before  # every file as it was, nothing added
    # a setting that does not change results (workers) is not a difference
    recorded = json.loads((out / "run.json").read_text())["settings"]
    recorded["run"] |= {"workers": 3, "cluster": "slurm"}
    assert settings_differences(out, Settings.model_validate(recorded)) == {}


def test_overwrite_replaces_them(done, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(done / "out", out)
    rc = main(["run", str(done / "images"), "--out", str(out), "--delta", "0.12", *FAST,
               "--overwrite"])
    assert rc == EXIT_OK, capsys.readouterr().err
    attrs = zarr.open_group(out / "smooth_2ch_s5.ome.zarr", mode="r").attrs["chromarate"]
    assert attrs["settings"]["estimator"]["delta_um"] == 0.12
    assert json.loads((out / "run.json").read_text())["settings"]["estimator"]["delta_um"] == 0.12


def test_output_inside_input_is_refused(done, capsys):
    images = done / "images"
    before = _hashes(images)
    for out in (images / "results", images, images / "a" / "b"):
        assert main(["run", str(images), "--out", str(out), *FAST]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert f"{out}: the results folder is inside the input folder {images}" in err
        assert "outside the input folder" in err
    assert _hashes(images) == before and not (images / "results").exists()
    assert not (images / "a").exists()
