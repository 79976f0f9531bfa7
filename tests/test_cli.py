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


def _settings_leaves():
    """``{leaf name: (dotted path, FieldInfo)}`` of every settings field."""
    from pydantic import BaseModel

    from pipeline.config import Settings

    out = {}

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, f"{prefix}{name}.")
            else:
                assert name not in out, f"two settings named {name}: the CLI's dests clash"
                out[name] = (prefix + name, field)

    walk(Settings, "")
    return out


def _run_actions():
    import argparse

    from flows.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subs.choices["run"], [a for a in subs.choices["run"]._actions
                                 if a.option_strings and a.dest != "help"]


# a valid value per option whose setting is neither a Literal nor a switch
SAMPLES = {"channels": ("heterochromatin", ("heterochromatin",)),
           "calibration": ("100:0.5", ({"offset": 100.0, "scale": 0.5},)),
           "pixel_size_um": ("0.25", 0.25), "delta_um": ("0.25", 0.25),
           "window_um": ("0.125", 0.125), "seed": ("7", 7), "tile_px": ("128", 128),
           "overlap_px": ("16", 16), "workers": ("3", 3),
           "scheduler_address": ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
           "nuclei_dir": ("labels", "labels"), "axes": ("zyx", "ZYX"),
           "z_step_um": ("0.5", 0.5), "calibration_scale": ("0.05", 0.05),
           "channel_offset_um": ("0.012,-0.004", (0.012, -0.004)),
           "calibrate_planes": ("each", "each")}


def test_run_options_are_the_settings_fields(tmp_path):
    """Every `run` option but the run's own (--out, --config, --samples, --overwrite) sets one
    settings field, and offers what the field says: its Literal's values as choices, its
    default in the help, no argparse default of its own (a config file's value stands), and
    a value given on the command line arrives in the settings. A field's default, values or
    description changed in pipeline.config without the CLI following fails here."""
    import typing

    from flows.cli_settings import settings_from_args as _settings_from_args
    from pipeline.config import Settings

    leaves = _settings_leaves()
    parser, actions = _run_actions()
    dark = tmp_path / "dark.tif"
    dark.write_bytes(b"")
    samples = SAMPLES | {"dark_frame": (str(dark), dark), "flat_field": (str(dark), dark)}
    seen = set()
    for action in actions:
        if action.dest in ("out", "config", "samples", "overwrite"):
            continue
        assert action.dest in leaves, f"{action.option_strings} sets no settings field"
        path, field = leaves[action.dest]
        seen.add(path)
        assert action.default is None, action.dest
        flag, helptext = action.option_strings[0], action.help or ""
        if field.description and not flag.startswith("--no-"):  # a negative flag reads differently
            assert field.description in helptext.replace("%%", "%"), flag
        if field.default is not None and not isinstance(field.default, bool):
            assert f"(default: {field.default})" in helptext, flag
        ann, base = field.annotation, Settings().model_dump()
        for part in path.split("."):
            base = base[part]
        if typing.get_origin(ann) is typing.Literal:
            assert set(action.choices) == set(typing.get_args(ann)), flag
            tries = [[flag, v] for v in typing.get_args(ann) if v != field.default]
        elif ann is bool:
            assert action.nargs == 0, flag
            tries = [[flag]]
        else:
            text, want = samples[action.dest]
            tries = [[flag, text]]
        for argv in tries:  # the first value the model accepts on its own
            args = parser.parse_args(["in", "--out", "o", *argv])
            try:
                got = _settings_from_args(args).model_dump()
            except ValueError:
                continue
            for part in path.split("."):
                got = got[part]
            if typing.get_origin(ann) is typing.Literal:
                want = argv[1]
            elif ann is bool:
                want = not field.default
            assert got == want and got != base, (flag, got, want)
            break
        else:
            raise AssertionError(f"no value of {flag} was accepted")
    assert {"method", "estimator.delta_um", "run.tile_px", "run.segment"} <= seen
    args = parser.parse_args(["in", "--out", "o", "--delta", "auto", "--window", "0.2"])
    assert _settings_from_args(args).estimator.delta_um == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["in", "--out", "o", "--delta", "big"])


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


def test_check_says_how_each_file_is_read_and_writes_nothing(tmp_path, capsys):
    """``chromarate check``: one line per file (layout, pixel size, channels read and their
    roles) or its refusal with the hint, exit 1 while any is refused; the same options as run
    change the reading (--channels with ignore), and nothing is written anywhere."""
    import tifffile

    from pipeline.io import write_tiff

    d = tmp_path / "in"
    rng = np.random.default_rng(0)
    write_tiff(d / "two.tif", rng.integers(100, 900, (2, 32, 32), dtype=np.uint16),
               axes="CYX", pixel_size_um=0.02)
    three = rng.integers(100, 900, (3, 32, 32), dtype=np.uint16)
    tifffile.imwrite(d / "three.ome.tif", three, ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["check", str(d)]) == 1
    out = capsys.readouterr().out
    assert "ok two.tif: CYX 2 x 32 x 32" in out and "0.02 µm per pixel (ome)" in out
    assert "channel 0 as chromatin, 1 as heterochromatin (default)" in out
    assert "refused three.ome.tif: the image has 3 channels" in out
    assert "1 of 2 file(s) readable, 1 refused" in out
    assert main(["check", str(d / "three.ome.tif"), "--channels",
                 "heterochromatin,ignore,chromatin"]) == 0
    out = capsys.readouterr().out
    assert "channel 0 as heterochromatin, 2 as chromatin (--channels)" in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
