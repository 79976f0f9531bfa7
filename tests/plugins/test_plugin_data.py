"""Layer data from stores, results folders and TIFF folders, and the sample data: no napari."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plugins.layers import robust_limits, store_layers
from plugins.reader import napari_get_reader, read_path

PX = 0.025  # as in conftest.py


def _by_name(layers: list) -> dict:
    return {kw["name"]: (data, kw, kind) for data, kw, kind in layers}


def test_robust_limits_ignore_nan_and_outliers() -> None:
    values = np.r_[np.linspace(0.0, 10.0, 1001), np.nan, np.inf, 1e6]
    lo, hi = robust_limits(values, (1, 99))
    assert 0.05 < lo < 0.2 and 9.8 < hi < 10.1
    assert robust_limits(np.full(5, np.nan)) == (0.0, 1.0)


def test_reader_declines_what_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    other = tmp_path / "other.ome.zarr"
    other.mkdir()
    (other / "zarr.json").write_text(json.dumps({"attributes": {"ome": {}}}))
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (tmp_path / "notes.txt", other, empty, tmp_path / "missing"):
        assert napari_get_reader(str(path)) is None, path


def test_store_layers_names_scale_units_and_display(synthetic_results: Path) -> None:
    store = synthetic_results / "cell.ome.zarr"
    assert napari_get_reader(str(store)) is read_path
    layers = _by_name(read_path(str(store)))
    assert list(layers) == [
        "cell raw heterochromatin", "cell λ mean", "cell λ std", "cell identifiable",
        "cell nuclei",
    ]
    for data, kw, _ in layers.values():
        assert kw["scale"] == (PX, PX)
        assert kw["units"] == ("micrometer", "micrometer")
        assert kw["multiscale"] and [lv.shape[-2:] for lv in data] == [(128, 96), (64, 48)]
    data, mean, kind = layers["cell λ mean"]
    assert kind == "image" and mean["colormap"] == "magma" and mean["visible"]
    assert mean["blending"] in ("translucent", "additive") and 0 < mean["opacity"] < 1
    assert mean["contrast_limits"] == pytest.approx((1.0, 2.0), abs=0.02)
    assert mean["metadata"]["chromarate"]["role"] == "lambda_mean"
    assert np.isnan(np.asarray(data[0])[-1, 0]) and np.asarray(data[0])[0, -1] == 2.0
    std = layers["cell λ std"][1]  # hidden; shown, it replaces λ (above, opaque), own look
    assert not std["visible"] and std["blending"] == "opaque"
    assert std["colormap"] != mean["colormap"] and std["metadata"]["chromarate"]["available"]
    assert std["contrast_limits"] == pytest.approx((0.1, 0.9), abs=0.01)  # its own data
    assert layers["cell identifiable"][2] == layers["cell nuclei"][2] == "labels"
    assert not layers["cell nuclei"][1]["visible"] and not layers["cell identifiable"][1]["visible"]
    features = layers["cell nuclei"][1]["features"]  # from summary_nuclei.csv, this file only
    assert list(features["index"]) == [1, 2] and list(features["lambda_mean"]) == [1.0, 2.0]


def test_store_with_planes_has_plane_scale(synthetic_results: Path) -> None:
    layers = _by_name(store_layers(synthetic_results / "stack.ome.zarr"))
    data, kw, _ = layers["stack λ mean"]
    assert data[0].shape == (2, 128, 96)
    assert kw["scale"] == (pytest.approx(0.1), PX, PX)
    assert kw["units"] == ("micrometer", "micrometer", "micrometer")
    assert kw["axis_labels"] == ("z", "y", "x")
    assert "features" not in layers["stack nuclei"][1]  # no rows for stack.tif in the CSV


def test_results_folder_reads_every_store_first_visible(synthetic_results: Path) -> None:
    layers = _by_name(read_path(str(synthetic_results)))
    assert layers["cell λ mean"][1]["visible"] and not layers["stack λ mean"][1]["visible"]
    assert {kw["metadata"]["chromarate"]["stem"] for _, kw, _ in layers.values()} == {
        "cell", "stack"}


def test_tiff_folder_raw_view_skips_bad_files(tiny_tiffs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.tif").write_bytes((tiny_tiffs / "smooth_1ch_s0.tif").read_bytes())
    (folder / "broken.tif").write_bytes(b"not a tiff")
    assert napari_get_reader(str(folder)) is read_path
    layers = read_path(str(folder))
    assert [kw["name"] for _, kw, _ in layers] == ["good raw"]
    data, kw, kind = layers[0]
    assert kind == "image" and data.shape == (96, 96) and kw["scale"] == (0.02, 0.02)
    (folder / "good.tif").unlink()
    with pytest.raises(ValueError, match="broken.tif"):
        read_path(str(folder))


def test_pipeline_store_reads_back(pipeline_results: Path) -> None:
    layers = _by_name(read_path(str(pipeline_results)))
    data, kw, _ = layers["smooth_1ch_s0 λ mean"]
    lam = np.asarray(data[0] if kw["multiscale"] else data)
    assert np.isfinite(lam).mean() > 0.5
    assert kw["scale"] == (0.02, 0.02)
    # the default method (neural) writes a std wherever it writes a mean
    data, kw, _ = layers["smooth_1ch_s0 λ std"]
    std = np.asarray(data[0] if kw["multiscale"] else data)
    assert kw["metadata"]["chromarate"]["available"]
    assert np.array_equal(np.isfinite(std), np.isfinite(lam)) and np.all(std[np.isfinite(std)] > 0)


def test_sample_layers_carry_truth_and_match_it(sample_cache: Path, monkeypatch) -> None:
    from plugins.sample import sample_layers

    monkeypatch.setenv("CHROMARATE_CACHE", str(sample_cache))
    layers = _by_name(sample_layers("smooth_1ch_s0"))
    truth, tkw, _ = layers["smooth_1ch_s0 λ truth"]
    data, mkw, _ = layers["smooth_1ch_s0 λ mean"]
    assert tkw["contrast_limits"] == mkw["contrast_limits"] and tkw["scale"] == mkw["scale"]
    lam = np.asarray(data[0])
    inner = np.zeros(lam.shape, bool)
    inner[16:-16, 16:-16] = True
    ok = inner & np.isfinite(lam)
    assert ok.mean() > 0.5
    assert np.corrcoef(lam[ok], truth[ok])[0, 1] > 0.9
