"""``chromarate run --flat-field`` (a real Prefect flow, real TIFFs): the flat field reaches
the fit and is recorded per plane in ``run.json``; an image it does not fit is refused with a
reason that names both files, the other images finish, and no input byte changes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import tifffile

from flows.cli import EXIT_SOME_FAILED, main
from pipeline.simulate import simulate_folder
from pipeline.simulate.stress import illumination_profile


def _sha(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_a_flat_field_run(prefect_api, tmp_path):
    fits = simulate_folder(tmp_path / "sim", truth_dir=tmp_path / "truth", shape=(64, 64),
                           cases=[("smooth", 2)], seed=3)[0]
    other = simulate_folder(tmp_path / "sim48", truth_dir=tmp_path / "truth48",
                            shape=(48, 48), cases=[("smooth", 2)], seed=4)[0]
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(fits, images / "fits.tif")
    shutil.copy(other, images / "other_size.tif")
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.rint(100 + 3000 * illumination_profile((64, 64), 0.7))
                     .astype(np.uint16))
    inputs = [*sorted(images.iterdir()), flat]
    before = _sha(inputs)
    out = tmp_path / "out"
    rc = main(["run", str(images), "--out", str(out), "--channels",
               "chromatin,heterochromatin", "--flat-field", str(flat)])
    run = json.loads((out / "run.json").read_text())
    assert rc == EXIT_SOME_FAILED
    assert run["settings"]["flat_field"] == str(flat)
    (done,) = run["images"]
    assert Path(done["image"]).name == "fits.tif"
    rec = done["planes"][0]["calibration"]["flat_field"]
    assert rec["path"] == str(flat)
    assert min(rec["gain_min"]) < 0.95 and max(rec["gain_max"]) > 1.05  # the beam, mean 1
    # the tables say which flat field divided each plane
    import pandas as pd

    rows = pd.read_csv(out / "summary_images.csv", keep_default_na=False)
    assert list(rows["flat_field"]) == ["flat.tif"]
    (failed,) = run["failed"]
    assert Path(failed["image"]).name == "other_size.tif"
    assert str(flat) in failed["reason"] and "64 x 64 pixels, the image 48 x 48" in failed["reason"]
    assert "run the images of this size separately" in failed["reason"]  # refused at ingest
    assert _sha(inputs) == before
