"""Small stores and TIFFs for the plugin tests, made once per session (no downloads)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

PX = 0.025
CAL = "100:0.00112801"
FIXED = "[estimator]\ndelta_um = 0.14\nwindow_um = 0.2\n"


def pytest_collection_modifyitems(config, items) -> None:
    """The viewer tests (marker ``napari``) need a display: without one they are skipped."""
    if not sys.platform.startswith("linux") or (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    skip = pytest.mark.skip(reason="viewer tests need a display: run pytest under xvfb-run -a")
    for item in items:
        if item.get_closest_marker("napari"):
            item.add_marker(skip)


def _synthetic(planes: int | None = None, y: int = 128, x: int = 96) -> dict:
    """Known maps: λ 1 on the left half and 2 on the right; std 0.1 but 0.9 in the top
    rows; identifiable everywhere but a corner; two nuclei (rectangles 1 and 2)."""
    lead = () if planes is None else (planes,)
    rng = np.random.default_rng(0)
    lam = np.ones((y, x), np.float32)
    lam[:, x // 2:] = 2.0
    std = np.full((y, x), 0.1, np.float32)
    std[:16] = 0.9
    ident = np.ones((y, x), np.uint8)
    ident[-8:, :8] = 0
    lam[-8:, :8] = np.nan
    nuclei = np.zeros((y, x), np.int32)
    nuclei[10:60, 10:40] = 1
    nuclei[70:120, 50:90] = 2
    raw = rng.integers(200, 2000, (1, y, x), dtype=np.uint16)
    rates = np.stack([lam, std])

    def rep(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a, lead + a.shape).copy()

    return {"raw": rep(raw), "rates": rep(rates), "identifiable": rep(ident),
            "nuclei": rep(nuclei), "lam": lam, "std": std, "ident": ident, "labels": nuclei}


@pytest.fixture(scope="session")
def synthetic_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with ``cell.ome.zarr`` (YX, nuclei, finite std), ``stack.ome.zarr``
    (2 z planes at 0.1 µm) and a ``summary_nuclei.csv``."""
    from pipeline.io import write_result_store

    out = tmp_path_factory.mktemp("results")
    for name, planes in (("cell", None), ("stack", 2)):
        d = _synthetic(planes)
        write_result_store(
            out / f"{name}.ome.zarr",
            raw=d["raw"],
            pixel_size_um=PX,
            channel_names=["heterochromatin"],
            rates=d["rates"],
            labels={"identifiable": d["identifiable"], "nuclei": d["nuclei"]},
            attrs={"source": f"/data/{name}.tif", "method": "closed-form",
                   "settings": {"calibration": [{"offset": 100.0, "scale": 0.00112801}]}},
            z_spacing_um=0.1 if planes else None,
        )
    (out / "summary_nuclei.csv").write_text(
        "file,plane,nucleus_id,area_um2,lambda_mean,lambda_std\n"
        "cell.tif,0,1,0.94,1.0,0.1\ncell.tif,0,2,1.25,2.0,0.1\nother.tif,0,1,1.0,1.5,0.2\n"
    )
    (out / "run.json").write_text("{}")
    return out


@pytest.fixture(scope="session")
def synthetic_maps() -> dict:
    return _synthetic()


@pytest.fixture(scope="session")
def tiny_tiffs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 96×96 single-channel synthetic TIFF (0.02 µm pixels)."""
    from pipeline.simulate import simulate_folder

    folder = tmp_path_factory.mktemp("tiny") / "images"
    simulate_folder(folder, kinds=("smooth",), channels=(1,), noise=0.02, shape=(96, 96),
                    pixel_size_um=0.02, seed=0)
    return folder


@pytest.fixture(scope="session")
def fixed_bandwidth_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Settings file with fixed bandwidths (skips the ~10 s automatic choice)."""
    path = tmp_path_factory.mktemp("config") / "fast.toml"
    path.write_text(FIXED)
    return path


@pytest.fixture(scope="session")
def pipeline_run(prefect_api: str, tiny_tiffs: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, list[dict]]:
    """``chromarate run`` of :func:`tiny_tiffs` through the plugin's runner (the real Prefect
    flow on the session's test API): the results folder and the runner's events."""
    from plugins.runner import build_settings, run_folder

    out = tmp_path_factory.mktemp("run")
    path = out / "fast.toml"
    path.write_text(FIXED)
    settings = build_settings(calibration=CAL, config=path, device="cpu")
    events = list(run_folder(tiny_tiffs, out, settings))
    assert events[-1]["event"] == "finished" and len(events[-1]["stores"]) == 1, events
    return out, events


@pytest.fixture(scope="session")
def pipeline_results(pipeline_run: tuple[Path, list[dict]]) -> Path:
    """The results folder of :func:`pipeline_run`."""
    return pipeline_run[0]


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of sample rate maps for the session (``CHROMARATE_CACHE``)."""
    return tmp_path_factory.mktemp("sample_cache")
