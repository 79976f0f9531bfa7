"""report.html, the sample sheet through ``chromarate run --samples``, and ``chromarate
compare``/``report``, on a small real results folder (closed-form stores made in process; the
CLI's run then finds every image up to date, so Prefect never starts)."""

from __future__ import annotations

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from pipeline.config import Settings
from pipeline.process import process_image
from pipeline.simulate import simulate_folder

STEMS = ("lognormal_2ch_s4", "smooth_1ch_s4", "step_1ch_s4")
FLAGS = ["--method", "closed-form", "--denoise", "none", "--tile-size", "32", "--overlap", "8"]
SHEET = "file,condition,replicate\nsmooth_1ch_s4.tif,control,1\nstep_1ch_s4,control,2\n" \
        "lognormal_2ch_s4.tif,treated,1\n"


class _Page(HTMLParser):
    """Every tag and every <img> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


class _Table(HTMLParser):
    """The cells of the first <table>, row by row (header cells included)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr" and not self._done:
            self.rows.append([])
        elif tag in ("td", "th") and not self._done:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._done = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _first_table(html: str) -> pd.DataFrame:
    """The first HTML table, as text (empty cells: "")."""
    parser = _Table()
    parser.feed(html)
    head, *body = parser.rows
    return pd.DataFrame(body, columns=head)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    simulate_folder(root / "images", truth_dir=root / "truth", shape=(96, 96), seed=4,
                    cases=[("step", 1), ("smooth", 1), ("lognormal", 2)])
    settings = Settings(method="closed-form", run={"denoise": "none", "tile_px": 32,
                                                   "overlap_px": 8})
    for stem in STEMS:
        process_image(root / "images" / f"{stem}.tif", root / "out", settings)
    (root / "sheet.csv").write_text(SHEET)
    code = main(["run", str(root / "images"), "--out", str(root / "out"), *FLAGS,
                 "--samples", str(root / "sheet.csv")])
    assert code == 0
    return root / "out"


def test_report_is_self_contained_and_every_image_decodes(results: Path) -> None:
    from PIL import Image

    page = _parse(results / "report.html")
    imgs = [a for t, a in page.tags if t == "img"]
    # distributions, the condition comparison, and per image its maps and bandwidth evidence
    assert len(imgs) == 2 + 2 * len(STEMS)
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,"), a["src"][:40]
        pic = Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1])))
        pic.load()
        assert pic.format == "PNG" and min(pic.size) > 100 and a["alt"]
        assert np.asarray(pic).std() > 0  # not a blank canvas
    for tag, a in page.tags:  # nothing fetched from elsewhere
        assert tag not in ("script", "link", "iframe")
        assert not str(a.get("src", "")).startswith(("http", "//", "file:"))
    text = " ".join(page.text)
    for stem in STEMS:
        assert f"{stem}.tif" in text
    for words in ("bandwidth evidence", "calibration", "quality checks", "λ distributions",
                  "Comparison by condition", "split reliability", "offset"):
        assert words in text, words
    assert any("λ (unitless)" in a["alt"] for a in imgs)


def test_sample_sheet_is_in_every_csv_and_the_report(results: Path) -> None:
    for name in ("images", "tiles", "nuclei", "domains"):
        df = pd.read_csv(results / f"summary_{name}.csv", dtype={"replicate": str})
        assert list(df.columns[:3]) == ["file", "condition", "replicate"], name
        if len(df):
            got = dict(zip(df["file"], df["condition"], strict=False))
            assert got.get("lognormal_2ch_s4.tif", "treated") == "treated"
            assert got.get("step_1ch_s4.tif", "control") == "control"
    nuclei = pd.read_csv(results / "summary_nuclei.csv")
    assert {"lambda_median", "lambda_iqr"} <= set(nuclei.columns)
    assert (nuclei["lambda_iqr"].dropna() >= 0).all()
    images = pd.read_csv(results / "summary_images.csv", dtype=str)
    assert images["pixel_size_um"].str.len().max() <= 8  # 0.02, not 0.020000000000000004
    text = " ".join(_parse(results / "report.html").text)
    assert "condition: treated" in text and "condition: control" in text


def test_rebuilding_the_report_leaks_no_warning(results: Path, tmp_path) -> None:
    """numpy's "Mean of empty slice" and matplotlib's layout warnings would reach users."""
    import warnings

    from pipeline.report import write_report

    out = tmp_path / "copy"
    shutil.copytree(results, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("error", UserWarning)
        write_report(out)


def test_colour_bar_has_a_title_and_maps_have_a_scale_bar() -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from pipeline.report.figures import LAMBDA_TITLE, plane_figure

    rng = np.random.default_rng(0)
    lam, std = rng.random((40, 50)), rng.random((40, 50))
    nuclei = np.zeros((40, 50), int)
    nuclei[5:30, 5:40] = 1
    fig = plane_figure(rng.random((2, 40, 50)), ["chromatin", "heterochromatin"], lam, std,
                       np.ones((40, 50)), nuclei, 0.02)
    titles = [ax.get_title() for ax in fig.axes]
    assert LAMBDA_TITLE == "λ (unitless)" and LAMBDA_TITLE in titles
    assert "λ std (unitless)" in titles
    bars = [a for ax in fig.axes for a in ax.artists if isinstance(a, AnchoredSizeBar)]
    assert len(bars) == 5  # two raw channels, λ, std, mask
    assert bars[0].txt_label.get_text() == "200 nm"  # 50 px × 0.02 µm = 1 µm wide


def test_bandwidth_evidence_shows_what_the_rule_minimised() -> None:
    """The figure shows the rule's own figure (the predicted squared error; least = chosen,
    brightest), and still draws the predicted correlation of run.json files written before."""
    from pipeline.report.figures import bandwidth_figure

    rows = [{"delta_px": d, "window_px": s, "reliability": 0.9, "predicted_r": 0.8,
             "predicted_mse": None if (d, s) == (3, 2.5) else 0.1 * d + 0.01 * s}
            for d in (3, 5, 7) for s in (2.5, 4, 5.5)]
    sel = {"table": rows, "delta_um": 0.1, "window_um": 0.05}
    fig = bandwidth_figure(sel, 0.02)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("predicted squared error") for t in titles), titles
    img = next(ax for ax in fig.axes if ax.get_title().startswith("predicted squared"))
    cmap, norm, data = img.images[0].cmap, img.images[0].norm, img.images[0].get_array()
    assert np.ma.is_masked(data[0, 0]) or np.isnan(data[0, 0])  # a candidate not judged
    lo = np.unravel_index(np.nanargmin(np.ma.filled(data, np.nan)), data.shape)
    bright = [sum(cmap(norm(v))[:3]) for v in np.ma.filled(data, np.nan).ravel() if np.isfinite(v)]
    assert sum(cmap(norm(data[lo]))[:3]) == pytest.approx(max(bright))
    old = bandwidth_figure({**sel, "table": [{k: v for k, v in r.items() if k != "predicted_mse"}
                                             for r in rows]}, 0.02)
    assert "predicted correlation with truth" in [ax.get_title() for ax in old.axes]


def test_report_without_tables_or_run_json_and_with_qc_flags(results: Path, tmp_path) -> None:
    from pipeline.report import write_report

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copytree(results / f"{STEMS[2]}.ome.zarr", bare / f"{STEMS[2]}.ome.zarr")
    text = " ".join(_parse(write_report(bare)).text)
    assert "no run.json" in text and "summary_images.csv is missing" in text
    assert STEMS[2] in text

    flagged = tmp_path / "flagged"
    shutil.copytree(results, flagged)
    images = pd.read_csv(flagged / "summary_images.csv")
    images["flags"] = ["", "low-identifiable-fraction;whole-field", ""]
    images.to_csv(flagged / "summary_images.csv", index=False)
    text = " ".join(_parse(write_report(flagged)).text)
    assert "QC flags: low-identifiable-fraction; whole-field" in text
    assert "QC flags: none" in text and "treated as one nucleus" in text  # what it means

    with pytest.raises(FileNotFoundError, match="no chromarate results"):
        write_report(tmp_path)


def test_without_matplotlib_the_report_says_how_to_get_it(results: Path, tmp_path,
                                                          monkeypatch, caplog) -> None:
    import sys

    from pipeline.report import ReportUnavailable, try_write_report, write_report

    out = tmp_path / "copy"
    shutil.copytree(results, out)
    (out / "report.html").unlink()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ReportUnavailable, match="pip install matplotlib"):
        write_report(out)
    assert try_write_report(out) is None and not (out / "report.html").exists()
    assert "chromarate report" in caplog.text
    assert main(["report", str(out)]) == 2


def test_compare_writes_table_figure_and_joins_the_report(results: Path, tmp_path,
                                                          capsys) -> None:
    out = tmp_path / "copy"
    shutil.copytree(results, out)
    assert main(["compare", str(out), "--by", "condition", "--reference", "treated"]) == 0
    table = pd.read_csv(out / "compare_condition.csv")
    assert list(table["condition"]) == ["control", "treated"]  # the sheet's order
    assert {"p_value", "p_holm"} <= set(table.columns)
    assert list(table["n_images"]) == [2, 1] and set(table["reference"]) == {"treated"}
    assert (out / "compare_condition.png").stat().st_size > 1000
    text = " ".join(_parse(out / "report.html").text)
    assert "Comparison by condition" in text and "treated" in text
    assert "p_holm" in text and "adjusted (Holm)" in text
    assert main(["compare", str(out), "--by", "genotype"]) == 2
    assert "genotype" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_bad_sheet_is_refused_before_anything_is_written(results: Path, tmp_path,
                                                         capsys) -> None:
    images = results.parent / "images"
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("file,condition\nsmooth_1ch_s4.tif,control\nstep_1ch_s4.tif,control\n"
                     "lognormal_2ch.tif,treated\n")
    out = tmp_path / "out"
    assert main(["run", str(images), "--out", str(out), *FLAGS, "--samples", str(sheet)]) == 2
    err = capsys.readouterr().err
    assert "sheet.csv" in err and "lognormal_2ch_s4.tif" in err and "lognormal_2ch.tif" in err
    assert not out.exists()


def test_rerun_keeps_a_current_report_and_a_new_sheet_rejoins(results: Path, tmp_path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(results, out)
    images = results.parent / "images"
    assert main(["run", str(images), "--out", str(out), *FLAGS]) == 0  # new store paths
    before = (out / "report.html").stat().st_mtime_ns
    assert main(["run", str(images), "--out", str(out), *FLAGS]) == 0  # the stored sheet
    assert (out / "report.html").stat().st_mtime_ns == before  # nothing changed
    import subprocess
    import sys

    check = ("import sys; from pipeline.report import try_write_report; "
             f"try_write_report({str(out)!r}); "
             "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert got == "[]", got  # a current report costs no drawing library import
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(SHEET.replace("condition", "genotype").replace("treated", "ko"))
    assert main(["run", str(images), "--out", str(out), *FLAGS, "--samples", str(sheet)]) == 0
    nuclei = pd.read_csv(out / "summary_nuclei.csv")
    assert "condition" not in nuclei.columns and "ko" in set(nuclei["genotype"])
    assert (out / "report.html").stat().st_mtime_ns > before
    assert "genotype: ko" in " ".join(_parse(out / "report.html").text)


def test_report_comparison_shows_raw_and_holm_adjusted_p_values(tmp_path) -> None:
    """Three conditions against a reference: the report's table has both p-value columns,
    with the numbers of compare_<by>.csv (Holm: the smallest of 2 tests times 2)."""
    from pipeline.report.build import _comparison_section

    means = {"ctl": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "up": [3.0, 3.1, 3.2, 3.3, 3.4, 3.5],
             "same": [1.05, 1.15, 1.25, 1.35, 1.45, 1.55]}
    nuclei = pd.DataFrame([{"file": f"{c}_{i}.tif", "condition": c, "lambda_median": m + d}
                           for c, ms in means.items() for i, m in enumerate(ms)
                           for d in (-0.01, 0.0, 0.01)])
    html = _comparison_section(tmp_path, nuclei, {"by": "condition", "reference": "ctl",
                                                  "unit": "image"})
    table = _first_table(html).set_index("condition")
    cols = list(table.columns)
    table = table[["p_value", "p_holm"]].apply(pd.to_numeric)  # "" (none): NaN
    assert cols[cols.index("p_value") + 1] == "p_holm"
    assert table.loc["up", "p_value"] == pytest.approx(2 / 924, rel=1e-3)  # fully separated
    assert table.loc["up", "p_holm"] == pytest.approx(2 * 2 / 924, rel=1e-3)  # 2 comparisons
    assert table.loc["same", "p_value"] > 0.5
    assert table.loc["same", "p_holm"] == pytest.approx(table.loc["same", "p_value"], rel=1e-3)
    assert np.isnan(table.loc["ctl", "p_holm"])
