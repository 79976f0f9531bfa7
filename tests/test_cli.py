"""`chromarate run` / `simulate` end to end: real TIFFs in, OME-Zarr 0.5 out, validated by a
second reader."""

import json

import numpy as np
import pytest
import zarr

from flows.cli import main
from pipeline.io import open_result_store
from pipeline.simulate import load_truth


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    images = root / "images"
    rc = main(["simulate", str(images), "--kinds", "step", "--channels", "1,2",
               "--size", "160", "--seed", "2"])
    assert rc == 0
    return images


def test_simulate_keeps_truth_outside(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["step_1ch_s2.tif", "step_2ch_s2.tif"]
    truth = folder.parent / "images_truth"
    assert (truth / "step_1ch_s2.npz").exists()


def test_run_writes_the_contract(folder, tmp_path, prefect_api):
    out = tmp_path / "out"
    truth = load_truth(folder.parent / "images_truth" / "step_1ch_s2.npz")
    cal = truth["calibration"][0]
    rc = main(["run", str(folder), "--out", str(out), "--method", "closed-form",
               "--calibration", f"{cal.offset}:{cal.scale}"])
    assert rc == 0
    for stem, n_ch in (("step_1ch_s2", 1), ("step_2ch_s2", 2)):
        store = out / f"{stem}.ome.zarr"
        res = open_result_store(store)
        assert res["raw"].shape == (n_ch, 160, 160)
        assert res["rates"].shape == (2, 160, 160)
        assert res["rates"].dtype == np.float32
        rates = np.asarray(res["rates"])
        assert np.isfinite(rates[0]).mean() > 0.5  # full size; border handled, not cropped
        # the closed form gives a std wherever it gives a mean
        np.testing.assert_array_equal(np.isfinite(rates[1]), np.isfinite(rates[0]))
        assert (rates[1][np.isfinite(rates[1])] > 0).all()
        # same scale as the raw image, in micrometres
        root = zarr.open_group(store, mode="r")
        ms_raw = root.attrs["ome"]["multiscales"][0]
        ms_rates = zarr.open_group(store / "rates", mode="r").attrs["ome"]["multiscales"][0]
        scale = [t for t in ms_raw["datasets"][0]["coordinateTransformations"] if t["type"] == "scale"]
        scale_r = [t for t in ms_rates["datasets"][0]["coordinateTransformations"] if t["type"] == "scale"]
        assert scale[0]["scale"][-2:] == scale_r[0]["scale"][-2:] == pytest.approx([0.02, 0.02])
        assert {a["name"]: a.get("unit") for a in ms_rates["axes"]}["x"] == "micrometer"
        # validated by ome-zarr-models (a second implementation of the spec)
        from ome_zarr_models.v05.image import Image

        Image.from_zarr(zarr.open_group(store / "rates", mode="r"))
        Image.from_zarr(root)
    # the single-channel map correlates with the truth (exact calibration)
    lam = np.asarray(open_result_store(out / "step_1ch_s2.ome.zarr")["rates"][0])
    ok = np.isfinite(lam)
    ok[:16] = ok[-16:] = False
    ok[:, :16] = ok[:, -16:] = False
    # a 160-px image is small for this estimator (0.885 measured); accuracy is in tests/estimate
    assert np.corrcoef(lam[ok], truth["lam"][ok])[0, 1] > 0.8
    run = json.loads((out / "run.json").read_text())
    assert len(run["images"]) == 2 and run["failed"] == []
    sel = run["images"][0]["planes"][0]["selection"]
    assert "reliability" in sel["criterion"]


def test_bad_file_is_named_and_others_complete(folder, tmp_path, capsys, prefect_api):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "broken.tif").write_text("not a tiff")
    (mixed / "good.tif").write_bytes((folder / "step_1ch_s2.tif").read_bytes())
    before = (mixed / "good.tif").read_bytes()
    out = tmp_path / "out"
    rc = main(["run", str(mixed), "--out", str(out), "--delta", "0.1", "--window", "0.1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err
    assert (out / "good.ome.zarr").exists() and not (out / "broken.ome.zarr").exists()
    assert (mixed / "good.tif").read_bytes() == before  # inputs are never modified


def test_bad_settings_exit_2(folder, tmp_path, capsys, prefect_api):
    rc = main(["run", str(folder), "--out", str(tmp_path / "o"), "--calibration", "1:-2"])
    assert rc == 2
    assert "OFFSET:SCALE" in capsys.readouterr().err


def test_misspelt_flag_names_the_subcommand_and_a_guess(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--calibratoin", "1:1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: chromarate run" in err and "did you mean --calibration?" in err


def test_bad_settings_are_one_plain_line(folder, tmp_path, capsys):
    rc = main(["run", str(folder), "--out", str(tmp_path / "o"), "--channels", "chromatin"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "single channel must be 'heterochromatin'" in err
    assert "pydantic" not in err and "http" not in err


def test_run_choices_match_the_settings_model():
    """The `run` options that take a fixed set of values offer exactly the values the settings
    model accepts: a value added to (or dropped from) a Literal in pipeline.config without
    the CLI following fails here."""
    import argparse
    import typing

    from flows.cli import build_parser
    from pipeline.config import RunSettings, Settings

    fields = {"method": Settings.model_fields["method"], "device": Settings.model_fields["device"],
              "denoise": RunSettings.model_fields["denoise"],
              "cluster": RunSettings.model_fields["cluster"]}
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = {a.dest: a for a in subs.choices["run"]._actions}
    for dest, field in fields.items():
        assert set(run[dest].choices) == set(typing.get_args(field.annotation)), dest
