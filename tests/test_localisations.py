"""Localisation tables rendered as images (pipeline.localisations, ``chromarate render``):
the exports of ThunderSTORM, NIS-Elements N-STORM and SMAP read, the rendering's grid,
count and blur, the command's files, its refusals, and λ fitted on a rendering of
localisations drawn from a known density."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from pipeline.io import inspect_tiff, open_result_store
from pipeline.localisations import read_localisations, render


def _thunderstorm(path: Path, x_nm, y_nm, precision_nm=10.0) -> Path:
    n = len(x_nm)
    df = pd.DataFrame({"frame": np.arange(1, n + 1), "x [nm]": x_nm, "y [nm]": y_nm,
                       "z [nm]": np.zeros(n), "sigma1 [nm]": 140.0,
                       "uncertainty_xy [nm]": np.full(n, precision_nm)})
    df.to_csv(path, index=False, quoting=2 if n < 10 else 0)  # ThunderSTORM quotes its header
    return path


def _nikon(path: Path) -> Path:
    """As NIS-Elements exports an N-STORM table: tab-separated, nm, drift-corrected Xc/Yc."""
    rows = [("647", 1010.0, 2010.0, 1000.0, 2000.0, 1, 12.0),
            ("561", 510.0, 310.0, 500.0, 300.0, 2, 20.0),
            ("647", 1010.0, 2010.0, 1000.0, 2000.0, 3, 14.0)]
    head = ("Channel Name\tX\tY\tXc\tYc\tHeight\tFrame\tLength\tPhotons\t"
            "Lateral Localization Accuracy\tZ")
    lines = [head] + [f"{c}\t{x}\t{y}\t{xc}\t{yc}\t900.5\t{f}\t1\t1000.0\t{a}\t0"
                      for c, x, y, xc, yc, f, a in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_formats_are_read_in_micrometres(tmp_path):
    ts = read_localisations(_thunderstorm(tmp_path / "ts.csv", [100.0, 2500.0], [40.0, 60.0]))
    assert ts.format == "ThunderSTORM"
    np.testing.assert_allclose(ts.data["x"], [0.1, 2.5])
    np.testing.assert_allclose(ts.data["precision"], [0.01, 0.01])
    assert set(ts.data["channel"]) == {"ts"} and list(ts.data["frame"]) == [1, 2]
    nk = read_localisations(_nikon(tmp_path / "nk.txt"))
    assert nk.format == "Nikon N-STORM"
    np.testing.assert_allclose(nk.data["x"], [1.0, 0.5, 1.0])  # Xc, not X
    assert list(nk.data["channel"]) == ["647", "561", "647"]
    smap = tmp_path / "smap.csv"
    pd.DataFrame({"frame": [1], "xnm": [300.0], "ynm": [200.0], "locprecnm": [9.0],
                  "channel": [0]}).to_csv(smap, index=False)
    sm = read_localisations(smap)
    assert sm.format == "SMAP" and float(sm.data["precision"].iloc[0]) == pytest.approx(0.009)


def test_the_rendering_grid_count_and_blur(tmp_path):
    table = read_localisations(_thunderstorm(tmp_path / "a.csv", [250.0, 250.0, 990.0],
                                             [210.0, 210.0, 410.0], precision_nm=20.0))
    counts, names, rec = render([table], 0.02, blur_um=0.0)
    assert counts.shape == (1, 21, 50) and names == ("a",)  # from the origin to the last one
    assert counts[0, 10, 12] == 2 and counts[0, 20, 49] == 1 and counts.sum() == 3
    blurred, _, rec = render([table], 0.02)  # the median precision, 20 nm = 1 px
    assert rec["blur_nm"] == pytest.approx(20.0) and rec["blur_source"] == "the median precision"
    assert blurred[0, 10, 12] == pytest.approx(2 / (2 * np.pi), rel=0.05)  # a 1 px Gaussian
    assert blurred[0, 4:17, 6:19].sum() == pytest.approx(2.0, rel=1e-3)  # the count is kept
    neg = read_localisations(_thunderstorm(tmp_path / "n.csv", [-30.0, 50.0], [10.0, 10.0]))
    img, _, rec = render([neg], 0.02, blur_um=0.0)
    assert rec["origin_um"] == [0.0, pytest.approx(-0.04)] and img[0, 0, 0] == 1
    nk = read_localisations(_nikon(tmp_path / "nk.txt"))
    img, names, rec = render([nk], 0.02, blur_um=0.0)
    assert names == ("561", "647")  # laser lines in numeric order, from one table
    assert img[1, 100, 50] == 2 and img[0, 15, 25] == 1
    assert [c["localisations"] for c in rec["channels"]] == [1, 2]


def test_render_command_writes_an_image_run_reads(tmp_path, capsys):
    out = tmp_path / "img" / "field.ome.tif"
    assert main(["render", str(_nikon(tmp_path / "nk.txt")), "--pixel-size", "0.02",
                 "--out", str(out)]) == 0
    info = inspect_tiff(out)
    assert (info.axes, info.pixel_size_um, info.channel_names) == ("CYX", 0.02, ("561", "647"))
    rec = json.loads((tmp_path / "img" / "field.render.json").read_text())
    assert rec["blur_nm"] == pytest.approx(14.0) and rec["tables"] == [str(tmp_path / "nk.txt")]
    said = capsys.readouterr().out
    assert "channel '647'" in said and "--channels ROLES" in said


@pytest.mark.parametrize("columns, message", [
    ({"frame": [1], "x": [1.0], "y": [2.0]}, "carry no unit"),
    ({"id": [1], "pos": [1.0]}, "not a localisation table"),
    ({"frame": [1], "x [nm]": ["a"], "y [nm]": [2.0]}, "is not a number"),
])
def test_tables_that_cannot_be_read_are_refused_by_name(tmp_path, capsys, columns, message):
    path = tmp_path / "bad.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    assert main(["render", str(path), "--pixel-size", "0.02",
                 "--out", str(tmp_path / "x.ome.tif")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and message in err
    assert not (tmp_path / "x.ome.tif").exists()


def test_no_precision_needs_a_blur(tmp_path, capsys):
    path = tmp_path / "np.csv"
    pd.DataFrame({"frame": [1], "x [nm]": [10.0], "y [nm]": [20.0]}).to_csv(path, index=False)
    assert main(["render", str(path), "--pixel-size", "0.02",
                 "--out", str(tmp_path / "x.ome.tif")]) == 2
    assert "pass --blur-nm" in capsys.readouterr().err
    assert main(["render", str(path), "--pixel-size", "0.02", "--blur-nm", "15",
                 "--out", str(tmp_path / "x.ome.tif")]) == 0


def test_lambda_from_a_rendering_of_drawn_localisations(tmp_path):
    """Localisations drawn from a known steady state (a stress case's heterochromatin field,
    50 per pixel at full occupancy, jittered by 15 nm), written as a ThunderSTORM table,
    rendered by ``chromarate render`` and fitted as ``chromarate run`` fits: λ follows the
    truth (measured r 0.980 1 µm inside the border; the stress suite's own rendering of this
    case gives 0.973)."""
    from benchmarks.split_half import draw_table
    from pipeline.config import Settings
    from pipeline.process import process_image
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "storm_smooth_1ch_dense")
    case = make_stress_case(spec, 11)  # a tuning seed
    px, locs = case.pixel_size_um, spec.locs_per_px
    ny, nx = case.occupancy.shape[1:]
    drawn = draw_table(case.occupancy[0], px, locs, 0.015, 1.0, "h", np.random.default_rng(0))
    table = _thunderstorm(tmp_path / "locs.csv", 1e3 * drawn.data["x"], 1e3 * drawn.data["y"],
                          precision_nm=15.0)
    out = tmp_path / "img" / "storm.ome.tif"
    assert main(["render", str(table), "--pixel-size", str(px), "--out", str(out)]) == 0
    m = process_image(out, tmp_path / "res", Settings(
        method="closed-form", calibration=[{"offset": 0.0, "scale": 1.0 / locs}]))
    lam = np.asarray(open_result_store(m["store"])["rates"])[0]
    b = int(round(1.0 / px))  # scored 1 µm inside the border, as the stress suite scores
    h, w = min(lam.shape[0], ny), min(lam.shape[1], nx)
    est, truth = lam[b:h - b, b:w - b], case.lam[b:h - b, b:w - b]
    ok = np.isfinite(est)
    assert ok.mean() > 0.9
    r = np.corrcoef(est[ok], truth[ok])[0, 1]
    assert r >= 0.95


def test_a_rendering_too_large_is_refused_before_it_is_made(tmp_path, capsys):
    """Coordinates that reach 30 x 20 thousand pixels at the pixel size asked (a unit
    mistake): refused with the size, before any memory is taken."""
    path = _thunderstorm(tmp_path / "t.csv", [10.0, 20.0], [10.0, 30.0])
    assert main(["render", str(path), "--pixel-size", "0.000001",
                 "--out", str(tmp_path / "x.ome.tif")]) == 2
    err = capsys.readouterr().err
    assert "30001 x 20001 pixels" in err and "check the pixel size" in err
