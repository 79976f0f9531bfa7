"""Two ``chromarate run`` processes at the same time, into two output folders, do not interfere.

Both inputs hold a ``cell.tif`` (different pixels), so a shared temporary name, cache entry or
Prefect result would show up as the wrong source, key or table row. The two processes share
one Prefect API (the session's test server, as two runs against one ``prefect server`` would)
and one ``TMPDIR``; every file a run writes must lie under its own output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import zarr

from pipeline.simulate import simulate_folder


def _inputs(root: Path) -> dict[str, Path]:
    sims = {s: simulate_folder(root / f"sim{s}", truth_dir=root / f"truth{s}", shape=(64, 64),
                               cases=[("smooth", 2)], seed=s)[0] for s in (5, 6, 7)}
    a, b = root / "in_a", root / "in_b"
    a.mkdir()
    b.mkdir()
    shutil.copy(sims[5], a / "cell.tif")
    shutil.copy(sims[6], b / "cell.tif")
    shutil.copy(sims[7], b / "other.tif")
    return {"a": a, "b": b}


def test_two_runs_at_once_do_not_interfere(prefect_api, tmp_path):
    inputs = _inputs(tmp_path)
    tmp = tmp_path / "shared_tmp"
    tmp.mkdir()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "TMPDIR": str(tmp)}
    procs = {}
    t0 = time.perf_counter()
    for tag, folder in inputs.items():
        out = tmp_path / f"out_{tag}"
        args = [sys.executable, "-m", "flows.cli", "run", str(folder), "--out", str(out),
                "--delta", "0.1", "--window", "0.1"]
        procs[tag] = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
    results = {tag: p.communicate(timeout=300) for tag, p in procs.items()}
    wall = time.perf_counter() - t0
    for tag, p in procs.items():
        assert p.returncode == 0, results[tag][1].decode()[-3000:]
    print(f"two concurrent runs: {wall:.1f} s wall")

    keys = {}
    for tag, folder in inputs.items():
        out = tmp_path / f"out_{tag}"
        record = json.loads((out / "run.json").read_text())
        assert record["input"] == str(folder.resolve()) and record["failed"] == []
        expect = {"cell.tif"} | ({"other.tif"} if tag == "b" else set())
        assert {Path(i["image"]).name for i in record["images"]} == expect
        for image in record["images"]:
            attrs = zarr.open_group(image["store"], mode="r").attrs["chromarate"]
            assert Path(attrs["source"]).parent == folder.resolve()  # its own input
            assert Path(image["store"]).parent == out.resolve()
            assert attrs["key"] == image["key"]
            keys[(tag, Path(image["image"]).name)] = image["key"]
        summary = pd.read_csv(out / "summary_images.csv")
        assert set(summary["file"]) == expect and len(summary) == len(expect)
        # nothing left behind: no partial entries, no work folders
        assert not [p for p in out.rglob("*") if ".partial-" in p.name]
        assert not list((out / ".chromarate" / "work").iterdir())
    assert keys[("a", "cell.tif")] != keys[("b", "cell.tif")]  # same name, other content
    assert not list(tmp.iterdir()), "a run left files in TMPDIR"  # all temporaries in OUT
