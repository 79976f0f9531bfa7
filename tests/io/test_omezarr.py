"""OME-Zarr 0.5 result stores: validated by ome-zarr-models, read by ome-zarr-py and zarr."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel

from pipeline.io import open_result_store, write_result_store
from pipeline.io.omezarr import n_pyramid_levels

PX = 0.025


def _stack(planes: int | None, y: int = 130, x: int = 72, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lead = () if planes is None else (planes,)
    rates = rng.random(lead + (2, y, x)).astype(np.float32)
    rates[..., 1, :4, :6] = np.nan  # unidentifiable pixels
    return {
        "raw": rng.integers(0, 3000, lead + (2, y, x), dtype=np.uint16),
        "rates": rates,
        "images": {
            "fields": (rng.random(lead + (2, y, x)), ["phi_h", "phi_w"]),
            "denoised": da.from_array(rng.random(lead + (y, x)).astype(np.float32), chunks=17),
        },
        "labels": {
            "identifiable": rng.random(lead + (y, x)) > 0.3,
            "nuclei": (rng.random(lead + (y, x)) > 0.5).astype(np.int32) * 3,
        },
    }


def _write(path: Path, planes: int | None = None, **extra) -> dict:
    data = _stack(planes)
    write_result_store(
        path,
        raw=data["raw"],
        pixel_size_um=PX,
        channel_names=["chromatin", "heterochromatin"],
        rates=data["rates"],
        images=data["images"],
        labels=data["labels"],
        attrs={"method": "closed-form", "criterion": float("nan"), "n": np.int64(3)},
        **extra,
    )
    return data


@pytest.mark.parametrize("planes", [None, 3])
def test_store_validates_and_round_trips(tmp_path: Path, planes: int | None) -> None:
    path = tmp_path / "cell.ome.zarr"
    data = _write(path, planes)
    root = zarr.open_group(path, mode="r")

    # ome-zarr-models: root image (with its labels), each sub-image, each label
    image = Image.from_zarr(root)
    assert sorted(image.labels.label_paths) == ["identifiable", "nuclei"]
    for name in ("rates", "fields", "denoised"):
        Image.from_zarr(root[name])
    for name in ("identifiable", "nuclei"):
        ImageLabel.from_zarr(root[f"labels/{name}"])

    disk_axes = "cyx" if planes is None else "czyx"
    ms = root.attrs["ome"]["multiscales"][0]
    assert root.attrs["ome"]["version"] == "0.5"
    assert "".join(a["name"] for a in ms["axes"]) == disk_axes
    units = {a["name"]: a.get("unit") for a in ms["axes"]}
    assert units["y"] == units["x"] == "micrometer"
    assert {a["name"]: a["type"] for a in ms["axes"]}["c"] == "channel"
    assert len(ms["datasets"]) == n_pyramid_levels((130, 72)) == 2
    for k, ds in enumerate(ms["datasets"]):
        scales = [t for t in ds["coordinateTransformations"] if t["type"] == "scale"]
        assert len(scales) == 1
        assert scales[0]["scale"][-2:] == [PX * 2**k, PX * 2**k]
        arr = root[ds["path"]]
        assert arr.metadata.dimension_names == tuple(disk_axes)
        assert max(arr.chunks[-2:]) <= 1024
    assert root["s1"].shape[-2:] == (65, 36)

    # our reader: original layouts back, lazily, with dask chunks equal to zarr chunks
    res = open_result_store(path)
    assert res["axes"] == ("cyx" if planes is None else "zcyx")
    assert res["pixel_size_um"] == pytest.approx(PX)
    assert res["channel_names"] == ["chromatin", "heterochromatin"]
    assert res["channel_names_of"]["fields"] == ["phi_h", "phi_w"]
    assert res["channel_names_of"]["rates"] == ["lambda_mean", "lambda_std"]
    assert res["attrs"] == {"method": "closed-form", "criterion": None, "n": 3}
    np.testing.assert_array_equal(res["raw"].compute(), data["raw"])
    rates = res["rates"].compute()
    assert rates.dtype == np.float32
    assert np.isnan(rates[..., 1, :4, :6]).all() and not np.isnan(rates[..., 0, :, :]).any()
    np.testing.assert_array_equal(rates, data["rates"])
    np.testing.assert_allclose(res["images"]["fields"].compute(), data["images"]["fields"][0])
    np.testing.assert_array_equal(
        res["labels"]["identifiable"].compute(), data["labels"]["identifiable"]
    )
    assert res["labels"]["identifiable"].dtype == np.uint8
    raw_zarr = root["s0"]
    assert res["raw"].chunksize == tuple(
        np.array(raw_zarr.chunks)[[1, 0, 2, 3]] if planes else raw_zarr.chunks
    )
    low = open_result_store(path, level=1)
    assert low["rates"].shape[-2:] == (65, 36)
    assert np.isnan(low["rates"][..., 1, 0, 0].compute()).all()  # NaN survives downsampling


def test_second_reader_ome_zarr_py(tmp_path: Path) -> None:
    path = tmp_path / "cell.ome.zarr"
    _write(path)
    nodes = list(Reader(parse_url(str(path)))())
    image = nodes[0]
    assert [d.shape for d in image.data] == [(2, 130, 72), (2, 65, 36)]
    assert image.metadata["channel_names"] == ["chromatin", "heterochromatin"]
    assert image.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, PX, PX]
    labels = {n.metadata.get("name"): n for n in nodes[1:] if n.data}
    assert set(labels) == {"identifiable", "nuclei"}
    assert labels["nuclei"].data[0].shape == (130, 72)
    rates = list(Reader(parse_url(str(path / "rates")))())[0]
    assert rates.metadata["channel_names"] == ["lambda_mean", "lambda_std"]


def test_pyramid_rules() -> None:
    assert n_pyramid_levels((40, 4000)) == 1
    assert n_pyramid_levels((64, 64)) == 2
    assert n_pyramid_levels((256, 300)) == 4
    assert n_pyramid_levels((5000, 5000)) == 4


def test_large_image_chunks_and_levels(tmp_path: Path) -> None:
    raw = da.zeros((1, 1300, 260), dtype=np.uint16, chunks=(1, 700, 100))
    path = write_result_store(
        tmp_path / "big.ome.zarr", raw=raw, pixel_size_um=0.1, channel_names=["heterochromatin"]
    )
    root = zarr.open_group(path, mode="r")
    shapes = [root[f"s{k}"].shape for k in range(4)]
    assert shapes == [(1, 1300, 260), (1, 650, 130), (1, 325, 65), (1, 162, 32)]
    assert "s4" not in root  # at most four levels
    assert root["s0"].chunks == (1, 1024, 260)
    assert open_result_store(path)["raw"].chunks == ((1,), (1024, 276), (260,))


def test_time_axis_and_z_spacing(tmp_path: Path) -> None:
    raw = np.zeros((2, 1, 32, 32), np.float32)
    write_result_store(
        tmp_path / "t.ome.zarr", raw=raw, pixel_size_um=0.1, channel_names=["h"], plane_axis="t"
    )
    root = zarr.open_group(tmp_path / "t.ome.zarr", mode="r")
    assert root["s0"].metadata.dimension_names == ("t", "c", "y", "x")
    Image.from_zarr(root)
    write_result_store(
        tmp_path / "z.ome.zarr", raw=raw, pixel_size_um=0.1, channel_names=["h"], z_spacing_um=0.3
    )
    ms = zarr.open_group(tmp_path / "z.ome.zarr", mode="r").attrs["ome"]["multiscales"][0]
    assert ms["axes"][1] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.3, 0.1, 0.1]


def _exploding(shape: tuple[int, ...]) -> da.Array:
    """A lazy array whose computation fails (as a crashed estimator would)."""

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("estimator crashed")

    return da.zeros(shape, dtype=np.float32, chunks=shape).map_blocks(boom, dtype=np.float32)


def test_atomic_failure_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cell.ome.zarr"
    with pytest.raises(RuntimeError, match="estimator crashed"):  # raw is written by then
        write_result_store(path, raw=np.zeros((1, 64, 64), np.uint16), pixel_size_um=0.1,
                           channel_names=["h"], rates=_exploding((2, 64, 64)))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_validation_happens_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.io.omezarr as omezarr

    monkeypatch.setattr(omezarr, "atomic_dir", None)  # would fail if writing began
    with pytest.raises(ValueError, match="integers"):
        write_result_store(tmp_path / "c.ome.zarr", raw=np.zeros((1, 64, 64), np.uint16),
                           pixel_size_um=0.1, channel_names=["h"],
                           labels={"bad": np.zeros((64, 64), np.float32)})  # fmt: skip


def test_atomic_failure_keeps_previous_store(tmp_path: Path) -> None:
    path = tmp_path / "cell.ome.zarr"
    _write(path)
    before = json.loads((path / "zarr.json").read_text())
    with pytest.raises(RuntimeError, match="estimator crashed"):
        write_result_store(path, raw=np.zeros((1, 64, 64), np.uint16), pixel_size_um=0.1,
                           channel_names=["h"], rates=_exploding((2, 64, 64)))  # fmt: skip
    assert json.loads((path / "zarr.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.ome.zarr"]


def test_rewrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "cell.ome.zarr"
    _write(path)
    write_result_store(
        path, raw=np.ones((1, 16, 16), np.uint16), pixel_size_um=0.5, channel_names=["h"]
    )
    res = open_result_store(path)
    assert res["raw"].shape == (1, 16, 16) and res["rates"] is None and res["labels"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.ome.zarr"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channel_names": ["a", "b"]}, "channel name"),
        ({"pixel_size_um": 0.0}, "positive"),
        ({"raw": np.zeros((16, 16))}, r"\(C, Y, X\)"),
        ({"images": {"x": np.zeros((3, 16))}}, "expected"),
        ({"images": {"rates": np.zeros((1, 16, 16))}}, "reserved"),
        ({"images": {"s0": np.zeros((1, 16, 16))}}, "usable image name"),
        ({"images": {"a/b": np.zeros((1, 16, 16))}}, "usable image name"),
        ({"rates": np.zeros((3, 16, 16))}, "channel name"),
        ({"attrs": {"bad": object()}}, "JSON"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"raw": np.zeros((1, 16, 16), np.uint16), "pixel_size_um": 0.1, "channel_names": ["h"]}
    with pytest.raises((ValueError, TypeError), match=match):
        write_result_store(tmp_path / "x.ome.zarr", **{**args, **kwargs})
    assert not (tmp_path / "x.ome.zarr").exists()


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_result_store(tmp_path / "nope.ome.zarr")


def test_record_and_axis_scales_without_parsing_json(tmp_path: Path) -> None:
    """``result_store_record`` tells chromarate stores from anything else; ``open_result_store``
    gives every axis's scale and unit (the napari plugin reads z spacing from them)."""
    from pipeline.io.omezarr import result_store_record

    raw = np.zeros((2, 1, 32, 32), np.uint16)
    path = write_result_store(tmp_path / "z.ome.zarr", raw=raw, pixel_size_um=0.1,
                              channel_names=["h"], z_spacing_um=0.3, attrs={"method": "neural"})
    assert result_store_record(path)["method"] == "neural"
    store = open_result_store(path)
    assert store["axis_scales"] == {"c": 1.0, "z": 0.3, "y": 0.1, "x": 0.1}
    assert store["axis_units"]["z"] == store["axis_units"]["x"] == "micrometer"
    assert store["axis_units"]["c"] is None
    flat = write_result_store(tmp_path / "flat.ome.zarr", raw=raw[0], pixel_size_um=0.1,
                              channel_names=["h"])
    assert set(open_result_store(flat)["axis_scales"]) == {"c", "y", "x"}

    plain = zarr.open_group(tmp_path / "plain.ome.zarr", mode="w", zarr_format=3)
    plain.attrs["other"] = 1
    broken = tmp_path / "broken.ome.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    (tmp_path / "file.ome.zarr").write_text("")
    for other in (tmp_path / "plain.ome.zarr", broken, tmp_path / "file.ome.zarr",
                  tmp_path / "missing.ome.zarr", tmp_path):
        assert result_store_record(other) is None, other
