"""Gather a results folder (stores, summary CSVs, ``run.json``) into ``report.html``."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compare import SAMPLES_FILE, compare_conditions, sheet_order, write_comparison
from ..io.atomic import atomic_write_bytes, atomic_write_text
from . import REPORT_FILE, figures

__all__ = ["REPORT_FILE", "write_comparison_outputs", "write_report"]

log = logging.getLogger(__name__)

MAX_SIDE = 512  # maps are drawn from every k-th pixel so that the longer side is at most this
MAX_PLANES = 4  # planes drawn per image (all planes are in the CSVs)
PIXEL_SAMPLE = 50_000  # identifiable pixels per image kept for the distribution figure
_RUN_COLUMNS = ["file", "plane", "method", "lambda_median", "lambda_iqr", "lambda_std_mean",
                "fraction_identifiable", "n_nuclei", "delta_um", "window_um",
                "calibration_source", "flags"]
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f3f3f3}
img{max-width:100%;display:block;margin:.5em 0}.note{color:#555;font-size:.9em}
.warn{color:#a33}.flag{background:#fde8e8}code{background:#f3f3f3;padding:0 3px}"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _fig(fig: Any, alt: str) -> str:
    return "" if fig is None else _img(figures.png_bytes(fig), alt)


def _table(df: pd.DataFrame) -> str:
    def fmt(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, float) else str(x)

    return df.to_html(index=False, escape=True, na_rep="", float_format=fmt, border=0)


def _read_csv(out_dir: Path, name: str) -> pd.DataFrame | None:
    path = out_dir / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"replicate": str})
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def _stores(out_dir: Path, record: dict[str, Any] | None) -> list[Path]:
    """The stores of the last run (``run.json``), else every chromarate store in ``out_dir``."""
    if record and record.get("images"):
        found = []
        for item in record["images"]:
            p = Path(item["store"])
            found.append(p if p.exists() else out_dir / p.name)  # the folder was moved
        return [p for p in found if p.exists()]
    stores = []
    for p in sorted(out_dir.glob("*.ome.zarr")):
        try:
            if "chromarate" in json.loads((p / "zarr.json").read_text()).get("attributes", {}):
                stores.append(p)
        except (OSError, ValueError):
            continue
    return stores


def _qc_items(attrs: dict[str, Any], plane: dict[str, Any], row: pd.Series | None) -> list[str]:
    items = []
    if row is not None and "flags" in row.index:
        from ..summary import FLAGS

        flags = row["flags"]
        text = "" if flags is None or (isinstance(flags, float) and math.isnan(flags)) else flags
        codes = [c.strip() for c in str(text).split(";") if c.strip()]
        items.append(f'<span class="{"flag" if codes else ""}">QC flags: '
                     f'{_e("; ".join(codes)) if codes else "none"}</span>'
                     + "".join(f"<br>· {_e(c)}: {_e(FLAGS.get(c, ''))}" for c in codes))
    frac = plane.get("fraction_identifiable")
    if row is not None and "fraction_identifiable" in row.index:
        frac = row["fraction_identifiable"]
    if frac is not None:
        items.append(f"identifiable fraction (inside nuclei): {float(frac):.0%}")
    seg = plane.get("segmentation", {}).get("nuclei", {})
    if seg:
        n = row["n_nuclei"] if row is not None and "n_nuclei" in row.index else "?"
        items.append(f"nuclei: {_e(n)} ({_e(seg.get('mode', '?'))})"
                     + (f" - {_e(seg['note'])}" if seg.get("note") else ""))
    tiling = plane.get("tiling", {})
    if tiling:
        bad = {k: plane.get(k, 0) for k in ("tiles_diverged", "tiles_fallback_retry",
                                            "tiles_fallback_closed_form")}
        text = f"tiles: {tiling.get('n_tiles', '?')}"
        if any(bad.values()):
            text += (f' <span class="warn">({bad["tiles_diverged"]} diverged, '
                     f'{bad["tiles_fallback_retry"]} refitted, '
                     f'{bad["tiles_fallback_closed_form"]} fell back to closed form)</span>')
        items.append(text)
    items.append(f"pixel size {attrs.get('pixel_size_um')} µm "
                 f"(from {_e(attrs.get('pixel_size_source', '?'))})")
    return items


def _calibration(plane: dict[str, Any]) -> str:
    rec = plane.get("calibration") or {}
    chans = pd.DataFrame(rec.get("channels") or [])
    if chans.empty:
        return '<p class="note">no calibration record</p>'
    cols = [c for c in ("role", "offset", "scale", "source") if c in chans.columns]
    out = f"<p>model: {_e(rec.get('model', '?'))}</p>" + _table(chans[cols])
    if rec.get("assumption"):
        out += f'<p class="note">{_e(rec["assumption"])}</p>'
    return out


def _bandwidth(plane: dict[str, Any], px: float) -> str:
    sel = plane.get("selection") or {}
    d, s = plane.get("delta_um"), plane.get("window_um")
    text = (f"<p>mollifier radius δ = {_e(d)} µm, rate window s = {_e(s)} µm "
            f"(the map's resolution); criterion: {_e(sel.get('criterion', 'not recorded'))}")
    if sel.get("reliability") is not None:
        text += f"; split reliability {float(sel['reliability']):.2f}"
    text += "</p>"
    return text + _fig(figures.bandwidth_figure(sel, px),
                       "bandwidth evidence: reliability over delta and window, chosen boxed")


def _sample(values: np.ndarray, seed: int = 0) -> np.ndarray:
    values = values[np.isfinite(values)]
    if values.size > PIXEL_SAMPLE:
        values = np.random.default_rng(seed).choice(values, PIXEL_SAMPLE, replace=False)
    return values


def _image_section(store: Path, images: pd.DataFrame | None, sheet_cols: list[str]
                   ) -> tuple[str, str, np.ndarray]:
    """HTML of one image, its file name, and a sample of its identifiable λ in nuclei."""
    from ..io import open_result_store

    res = open_result_store(store)
    attrs = res["attrs"]
    name = Path(attrs.get("source", store.name)).name
    raw, rates = res["raw"], res["rates"]
    labels = res["labels"]
    if raw.ndim == 3:  # one plane: add the plane axis
        raw, rates = raw[None], None if rates is None else rates[None]
        labels = {k: v[None] for k, v in labels.items()}
    step = max(1, math.ceil(max(raw.shape[-2:]) / MAX_SIDE))
    px = res["pixel_size_um"]
    rows = None if images is None else images[images["file"].astype(str) == name]
    parts = [f'<h2 id="{_e(store.name)}">{_e(name)}</h2>']
    if rows is not None and len(rows) and sheet_cols:
        info = ", ".join(f"{c}: {_e(rows.iloc[0][c])}" for c in sheet_cols)
        parts.append(f"<p><b>{info}</b></p>")
    parts.append(f'<p class="note">store <code>{_e(store.name)}</code>, method '
                 f'{_e(attrs.get("method", "?"))}, code {_e(attrs.get("code_version", "?"))}</p>')
    planes = attrs.get("planes") or [{}] * raw.shape[0]
    pixels = []
    for p in range(raw.shape[0]):
        ident = labels.get("identifiable")
        nuc = labels.get("nuclei")
        if rates is not None:
            lam_full = np.asarray(rates[p, 0], np.float64)
            ok = np.isfinite(lam_full)
            if ident is not None:
                ok &= np.asarray(ident[p]) > 0
            if nuc is not None:
                ok &= np.asarray(nuc[p]) > 0
            pixels.append(_sample(lam_full[ok], seed=p))
        if p >= MAX_PLANES:
            continue
        sl = np.s_[::step, ::step]
        lam = (np.full(raw.shape[-2:], np.nan)[sl] if rates is None
               else np.asarray(rates[p, 0][sl], np.float64))
        std = None if rates is None else np.asarray(rates[p, 1][sl], np.float64)
        fig = figures.plane_figure(
            np.asarray(raw[p][(slice(None),) + sl]), res["channel_names"], lam, std,
            None if ident is None else np.asarray(ident[p][sl]),
            None if nuc is None else np.asarray(nuc[p][sl]), px * step)
        plane = planes[p] if p < len(planes) else {}
        row = None
        if rows is not None and "plane" in rows.columns and (rows["plane"] == p).any():
            row = rows[rows["plane"] == p].iloc[0]
        title = f"plane {p}" if raw.shape[0] > 1 else "maps"
        parts += [f"<h3>{title}</h3>", '<p class="note">grey in the λ and std maps: no value '
                  "(unidentifiable, or outside nuclei); colour limits: 1st-99th percentile</p>",
                  _fig(fig, f"{name} {title}: raw, lambda "
                                                 f"({figures.LAMBDA_TITLE}), std, nuclei"),
                  "<h3>quality checks</h3><ul>"
                  + "".join(f"<li>{i}</li>" for i in _qc_items(attrs, plane, row)) + "</ul>",
                  "<h3>bandwidth evidence</h3>", _bandwidth(plane, px),
                  "<h3>calibration</h3>", _calibration(plane)]
    if raw.shape[0] > MAX_PLANES:
        parts.append(f'<p class="note">{raw.shape[0] - MAX_PLANES} more plane(s) are not '
                     "drawn; every plane is in the CSV tables</p>")
    sample = np.concatenate(pixels) if pixels else np.array([])
    return "\n".join(parts), name, sample


def _comparison_specs(out_dir: Path, nuclei: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The comparisons to show: each ``compare_<by>.csv`` (its by, reference and unit), and
    by ``condition`` when the sample sheet has one and no such file exists."""
    specs = []
    for path in sorted(out_dir.glob("compare_*.csv")):
        try:
            t = pd.read_csv(path, dtype=str, nrows=1)
            specs.append({"by": t.columns[0], "reference": t["reference"].iloc[0],
                          "unit": t["unit"].iloc[0]})
        except (OSError, ValueError, KeyError, IndexError):
            log.warning("cannot read %s; it is left out of the report", path)
    if nuclei is not None and "condition" in nuclei.columns and not any(
            s["by"] == "condition" for s in specs):
        specs.append({"by": "condition", "reference": None, "unit": "image"})
    return specs


def _comparison_section(out_dir: Path, nuclei: pd.DataFrame, spec: dict[str, Any]) -> str:
    by = spec["by"]
    try:
        table = compare_conditions(nuclei, by, reference=spec["reference"], unit=spec["unit"],
                                   order=sheet_order(out_dir, by))
    except ValueError as exc:
        return f'<h2>Comparison by {_e(by)}</h2><p class="warn">{_e(exc)}</p>'
    unit = spec["unit"]
    return (f'<h2 id="compare-{_e(by)}">Comparison by {_e(by)}</h2>'
            f"<p>Each {_e(unit)} counts once: its number is the median λ of its nuclei "
            f"(each nucleus: the median of its identifiable pixels). Per {_e(by)}: the median of "
            f"these numbers, a 95 % interval from resampling {_e(unit)}s (not nuclei), the "
            f"difference from <b>{_e(table['reference'].iloc[0])}</b> with its interval, and a "
            f"p-value from a rank test that shuffles whole {_e(unit)}s between the two groups. "
            "<code>p_min</code> is the smallest p-value the number of "
            f"{_e(unit)}s allows; <code>p_holm</code> is <code>p_value</code> adjusted "
            f"(Holm) for the number of {_e(by)}s compared with the reference: read it when "
            "you look at several at once. See docs/report.md.</p>"
            + _table(table)
            + '<p class="note">Points: nuclei (median λ of each); black bars: image medians; '
            "diamond and coloured line: the condition's median and its 95 % interval.</p>"
            + _fig(figures.compare_figure(nuclei, table, by),
                   f"per-nucleus lambda grouped by image within {by}"))


def _header(out_dir: Path, record: dict[str, Any] | None, n_stores: int) -> str:
    from .. import __version__

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>chromarate report: {_e(out_dir.resolve().name)}</h1>",
             f'<p class="note">written {now} by chromarate {_e(__version__)} from '
             f"<code>{_e(out_dir.resolve())}</code></p>",
             "<p>λ = Γ<sub>me</sub>/Γ<sub>ac</sub>, the ratio of the methylation to the "
             "acetylation rate (unitless): λ &gt; 1, methylation outpaces acetylation. λ is "
             "reported only where it can be inferred (identifiable pixels) inside nuclei.</p>"]
    if record:
        s = record.get("settings", {})
        parts.append(f"<p>{n_stores} image(s); method {_e(s.get('method', '?'))}, denoise "
                     f"{_e(s.get('run', {}).get('denoise', '?'))}, seed "
                     f"{_e(record.get('seed', '?'))}, code {_e(record.get('code_version', '?'))}"
                     f"; input <code>{_e(record.get('input', '?'))}</code></p>")
        failed = record.get("failed") or []
        if failed:
            parts.append(f'<h3 class="warn">{len(failed)} image(s) failed</h3><ul>' + "".join(
                f"<li>{_e(Path(f['image']).name)}: {_e(f['reason'])}</li>" for f in failed)
                + "</ul>")
    else:
        parts.append(f'<p class="note">no run.json: {n_stores} store(s) found in the folder</p>')
    return "\n".join(parts)


def write_report(out_dir: str | Path) -> Path:
    """Build ``out_dir/report.html`` from the results there (atomically); returns its path.

    Raises
    ------
    FileNotFoundError
        When ``out_dir`` holds no chromarate result store.
    ReportUnavailable
        When matplotlib is missing.
    """
    out_dir = Path(out_dir)
    run_json = out_dir / "run.json"
    record = json.loads(run_json.read_text()) if run_json.is_file() else None
    stores = _stores(out_dir, record)
    if not stores:
        raise FileNotFoundError(f"{out_dir}: no chromarate results (<stem>.ome.zarr) to report")
    images, nuclei = _read_csv(out_dir, "summary_images.csv"), _read_csv(out_dir,
                                                                         "summary_nuclei.csv")
    sheet = pd.read_csv(out_dir / SAMPLES_FILE, dtype=str, nrows=0) if (
        out_dir / SAMPLES_FILE).is_file() else None
    sheet_cols = [] if sheet is None or images is None else [
        c for c in sheet.columns if c != "file" and c in images.columns]
    sections, pixels = [], {}
    for store in stores:
        body, name, sample = _image_section(store, images, sheet_cols)
        sections.append((store, name, body))
        pixels[name] = sample
    group = None
    if images is not None and "condition" in images.columns:
        group = dict(zip(images["file"].astype(str), images["condition"].astype(str),
                         strict=True))
    toc = "".join(f'<li><a href="#{_e(s.name)}">{_e(n)}</a></li>' for s, n, _ in sections)
    parts = [_header(out_dir, record, len(stores))]
    if images is not None:
        cols = [c for c in _RUN_COLUMNS[:1] + sheet_cols + _RUN_COLUMNS[1:] if c in images]
        parts += ["<h2>Images</h2>", _table(images[cols])]
    else:
        parts.append('<p class="note">summary_images.csv is missing</p>')
    parts += ["<h2>λ distributions</h2>",
              _fig(figures.distribution_figure(pixels, nuclei, group),
                   "lambda per image: pixels and nuclei")]
    if nuclei is not None:
        parts += [_comparison_section(out_dir, nuclei, spec)
                  for spec in _comparison_specs(out_dir, nuclei)]
    parts += [f"<h2>Per image</h2><ul>{toc}</ul>"] + [body for _, _, body in sections]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>chromarate report: {_e(out_dir.resolve().name)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return atomic_write_text(out_dir / REPORT_FILE, page)


def write_comparison_outputs(out_dir: str | Path, by: str = "condition", *,
                             reference: str | None = None, unit: str = "image"
                             ) -> dict[str, Path]:
    """``chromarate compare``: ``compare_<by>.csv``, ``compare_<by>.png`` and a rebuilt
    ``report.html`` (which then shows this comparison)."""
    out_dir = Path(out_dir)
    nuclei = _read_csv(out_dir, "summary_nuclei.csv")
    if nuclei is None:
        raise FileNotFoundError(f"{out_dir}: no summary_nuclei.csv; run chromarate run first")
    table = compare_conditions(nuclei, by, reference=reference, unit=unit,
                               order=sheet_order(out_dir, by))
    paths = {"csv": write_comparison(table, out_dir, by)}
    png = figures.png_bytes(figures.compare_figure(nuclei, table, by))
    paths["figure"] = atomic_write_bytes(out_dir / f"compare_{by}.png", png)
    paths["report"] = write_report(out_dir)
    return paths
