"""``kill -9`` mid-run, then re-run: only complete stores are visible, finished work is kept."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import zarr

from flows.flow import run
from pipeline.config import Settings
from pipeline.io import open_result_store
from pipeline.simulate import load_truth


def test_kill_and_resume(prefect_api, sim_folder, tmp_path):
    from ome_zarr_models.v05.image import Image

    out = tmp_path / "out"
    cal = load_truth(sim_folder / "truth" / "smooth_1ch_s1.npz")["calibration"][0]
    args = [sys.executable, "-m", "flows.cli", "run", str(sim_folder / "images"), "--out",
            str(out), "--calibration", f"{cal.offset}:{cal.scale}", "--tile-size", "16",
            "--overlap", "6"]
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "lognormal_2ch_s1.ome.zarr"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # whatever is visible is complete: every store validates and carries its key
    visible = sorted(p.name for p in out.glob("*.ome.zarr"))
    assert "lognormal_2ch_s1.ome.zarr" in visible and len(visible) < 3
    for name in visible:
        root = zarr.open_group(out / name, mode="r")
        Image.from_zarr(root)
        assert root.attrs["chromarate"]["key"]
    assert not (out / "summary_images.csv").exists()  # written only at the end of a run
    mtime = (first / "zarr.json").stat().st_mtime_ns

    settings = Settings(calibration=({"offset": cal.offset, "scale": cal.scale},),
                        run={"tile_px": 16, "overlap_px": 6})
    record = run(sim_folder / "images", out, settings)
    assert record["failed"] == []
    skipped = {r["store"].rsplit("/", 1)[-1]: r["skipped"] for r in record["images"]}
    assert skipped["lognormal_2ch_s1.ome.zarr"] is True
    assert (first / "zarr.json").stat().st_mtime_ns == mtime  # not recomputed
    for name in ("lognormal_2ch_s1", "smooth_1ch_s1", "step_1ch_s1"):
        res = open_result_store(out / f"{name}.ome.zarr")
        assert np.isfinite(np.asarray(res["rates"][0])).mean() > 0.4
    assert not list(out.glob(".*.partial-*"))  # leftovers of the killed run are cleaned
    assert not list((out / ".chromarate" / "work").iterdir())
