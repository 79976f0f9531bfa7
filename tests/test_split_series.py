"""chromarate split-series: a multi-position OME-TIFF into one TIFF per series."""

import numpy as np
import pytest
import tifffile

from flows.cli import main
from pipeline.io import InputError, inspect_tiff, read_planes
from pipeline.split_series import split_series


def _positions(path, rng):
    """Three positions as Micro-Manager/Bio-Formats save them: one OME Image each, with its
    own pixel size, channel names and (for one) Z planes."""
    data = [rng.integers(0, 4000, (2, 48, 48), dtype=np.uint16),
            rng.integers(0, 4000, (2, 40, 56), dtype=np.uint16),
            rng.integers(0, 4000, (3, 2, 32, 32), dtype=np.uint16)]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(data[0], metadata={"axes": "CYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02,
                                    "Channel": {"Name": ["H3K9me3", "DAPI"]}})
        tw.write(data[1], metadata={"axes": "CYX", "PhysicalSizeX": 0.03, "PhysicalSizeY": 0.03})
        tw.write(data[2], metadata={"axes": "ZCYX", "PhysicalSizeX": 0.02,
                                    "PhysicalSizeY": 0.02, "PhysicalSizeZ": 0.25})
    return data


def test_every_series_is_written_with_its_own_metadata(tmp_path):
    src = tmp_path / "in" / "positions.ome.tif"
    src.parent.mkdir()
    data = _positions(src, np.random.default_rng(0))
    before = src.read_bytes()
    res = split_series(src, tmp_path / "split")
    assert [p.name for p in res.written] == [f"positions_s{k}.ome.tif" for k in range(3)]
    assert not res.refused and src.read_bytes() == before
    infos = [inspect_tiff(p) for p in res.written]
    assert [i.pixel_size_um for i in infos] == pytest.approx([0.02, 0.03, 0.02])
    assert infos[0].channel_names == ("H3K9me3", "DAPI") and infos[1].channel_names is None
    assert (infos[2].axes, infos[2].n_planes, infos[2].z_step_um) == ("ZCYX", 3,
                                                                     pytest.approx(0.25))
    assert all(i.series_note is None for i in infos)
    for p, i, d in zip(res.written, infos, data, strict=True):
        got = read_planes(p, i).compute()
        np.testing.assert_array_equal(got.reshape(d.shape), d)


def test_refusals(tmp_path):
    one = tmp_path / "one.ome.tif"
    tifffile.imwrite(one, np.zeros((32, 32), np.uint16), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02})
    with pytest.raises(InputError, match="one image series: nothing to split"):
        split_series(one, tmp_path / "out")
    with pytest.raises(InputError, match="the output folder is the input file's folder"):
        split_series(one, tmp_path)
    # a series without a pixel size is refused, the others written
    mixed = tmp_path / "mixed.ome.tif"
    with tifffile.TiffWriter(mixed, ome=True) as tw:
        tw.write(np.ones((32, 32), np.uint16), metadata={"axes": "YX", "PhysicalSizeX": 0.02,
                                                         "PhysicalSizeY": 0.02})
        tw.write(np.ones((32, 32), np.uint16), metadata={"axes": "YX"})
    res = split_series(mixed, tmp_path / "out")
    assert [p.name for p in res.written] == ["mixed_s0.ome.tif"]
    assert len(res.refused) == 1 and "series 1" in res.refused[0] and "pixel size" in \
        res.refused[0]


def test_cli_writes_every_position(tmp_path, capsys):
    src = tmp_path / "in" / "positions.ome.tif"
    src.parent.mkdir()
    _positions(src, np.random.default_rng(1))
    rc = main(["split-series", str(src), "--out", str(tmp_path / "split")])
    assert rc == 0 and "3 series written" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == [
        f"positions_s{k}.ome.tif" for k in range(3)]
