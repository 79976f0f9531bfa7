"""The report's figures, drawn with matplotlib's object API (no ``pyplot``: nothing global
changes, so drawing is safe inside napari or a worker thread) and returned as PNG bytes.

Every map is drawn in micrometres with a scale bar; λ and its std have colour bars titled
with their unit (λ is a ratio of rates: unitless).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LAMBDA_TITLE",
    "STD_TITLE",
    "ReportUnavailable",
    "bandwidth_figure",
    "compare_figure",
    "distribution_figure",
    "nice_length",
    "plane_figure",
    "png_bytes",
    "robust_limits",
]

LAMBDA_TITLE = "λ (unitless)"
STD_TITLE = "λ std (unitless)"
LAMBDA_CMAP, STD_CMAP = "magma", "viridis"
DPI = 90
_NAN_COLOUR = "#d0d0d0"
_PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


class ReportUnavailable(RuntimeError):
    """The report cannot be drawn here (matplotlib is missing)."""


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # matplotlib may become an optional extra
        raise ReportUnavailable(
            "the report needs matplotlib (a dependency of chromarate that is missing here): "
            "pip install matplotlib") from exc
    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (Agg, via ``Figure.savefig``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def nice_length(target: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten not above ``target`` (> 0).

    >>> nice_length(0.37), nice_length(4.0), nice_length(12.0)
    (0.2, 2.0, 10.0)
    """
    exp = math.floor(math.log10(target))
    base = 10.0 ** exp
    return round(max(m for m in (1, 2, 5) if m * base <= target * (1 + 1e-9)) * base, 12)


def _scale_bar(ax: Any, width_um: float, colour: str = "white") -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = nice_length(width_um / 4)
    label = f"{length:g} µm" if length >= 1 else f"{length * 1000:g} nm"
    bar = AnchoredSizeBar(ax.transData, length, label, "lower right", pad=0.3, borderpad=0.3,
                          color=colour, frameon=True, size_vertical=width_um / 120,
                          fontproperties={"size": 7})
    bar.patch.set(facecolor="black" if colour == "white" else "white", alpha=0.45,
                  edgecolor="none")
    ax.add_artist(bar)


def robust_limits(values: Any, percentiles: Sequence[float] = (1, 99)) -> tuple[float, float]:
    """Colour limits from percentiles of the finite values: ``(low, high)`` with
    ``high > low``, ``(0, 1)`` when nothing is finite. The report's maps use them, so one hot
    pixel does not wash out a map.

    >>> robust_limits(np.r_[np.arange(100.0), np.nan, 1e9], (1, 99))  # 1e9: one hot pixel
    (1.0, 99.0)
    >>> robust_limits([np.nan, np.nan]), robust_limits([2.0, 2.0])
    ((0.0, 1.0), (2.0, 3.0))
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _map(ax: Any, img: np.ndarray, extent: tuple, title: str, **kwargs: Any) -> Any:
    im = ax.imshow(img, extent=extent, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def _rate_map(fig: Any, ax: Any, img: np.ndarray, extent: tuple, title: str, unit_title: str,
              cmap: str, width_um: float) -> None:
    """λ or its std: 1st-99th percentile colours, no value in grey, a colour bar titled with
    the unit, a scale bar."""
    from matplotlib import colormaps

    lo, hi = robust_limits(img, (1, 99))
    im = _map(ax, img, extent, title, cmap=colormaps[cmap].with_extremes(bad=_NAN_COLOUR),
              vmin=lo, vmax=hi)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.ax.set_title(unit_title, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    _scale_bar(ax, width_um)


def plane_figure(raw: np.ndarray, channel_names: Sequence[str], lam: np.ndarray,
                 std: np.ndarray | None, identifiable: np.ndarray | None,
                 nuclei: np.ndarray | None, pixel_size_um: float) -> Any:
    """One plane: raw channels, λ (colour bar, scale bar), λ std, nuclei outlines over the
    identifiable mask. Arrays are (C, Y, X) for ``raw`` and (Y, X) for the others."""
    from skimage.segmentation import find_boundaries

    h, w = lam.shape
    extent = (0.0, w * pixel_size_um, h * pixel_size_um, 0.0)
    width_um = w * pixel_size_um
    n = raw.shape[0] + 3
    fig = _figure(2.7 * n, 2.9, layout=None)  # a fixed grid: half the drawing time per image
    axes = fig.subplots(1, n, gridspec_kw={"left": 0.01, "right": 0.97, "bottom": 0.03,
                                           "top": 0.84, "wspace": 0.3})
    for ax, img, name in zip(axes, raw, channel_names, strict=False):
        lo, hi = robust_limits(img, (0.5, 99.5))
        _map(ax, img, extent, f"raw: {name}", cmap="gray", vmin=lo, vmax=hi)
        _scale_bar(ax, width_um)
    ax_lam, ax_std, ax_mask = axes[-3:]
    _rate_map(fig, ax_lam, lam, extent, "λ mean", LAMBDA_TITLE, LAMBDA_CMAP, width_um)
    if std is not None and np.isfinite(std).any():
        _rate_map(fig, ax_std, std, extent, "λ std", STD_TITLE, STD_CMAP, width_um)
    else:
        ax_std.set_axis_off()
        ax_std.set_title("λ std", fontsize=9)
        ax_std.text(0.5, 0.5, "no uncertainty\n(closed-form method,\nor no value)",
                    ha="center", va="center", fontsize=8, transform=ax_std.transAxes)
    ident = np.ones_like(lam, bool) if identifiable is None else identifiable > 0
    rgb = np.where(ident[..., None], 0.92, 0.35) * np.ones(3)
    if nuclei is not None and nuclei.max() > 0:
        edge = find_boundaries(nuclei, mode="inner")
        rgb[edge] = (0.0, 0.75, 0.95)
    _map(ax_mask, rgb, extent, "nuclei (outlines), identifiable\n(light) or not (dark)")
    _scale_bar(ax_mask, width_um, colour="black")
    return fig


def bandwidth_figure(selection: Mapping[str, Any], pixel_size_um: float) -> Any | None:
    """The bandwidth evidence: split reliability and the rule's figure (the predicted squared
    error; the predicted correlation in runs from before it) over the grid of mollifier radius
    δ and rate window s, the chosen pair boxed. None without a grid."""
    table = pd.DataFrame(selection.get("table") or [])
    if table.empty or not {"delta_px", "window_px"} <= set(table.columns):
        return None
    rule = "predicted_mse" if "predicted_mse" in table.columns else "predicted_r"
    metrics = [m for m in ("reliability", rule) if m in table.columns]
    fig = _figure(4.2 * len(metrics), 3.4, layout=None)
    axes = np.atleast_1d(fig.subplots(1, len(metrics), gridspec_kw={
        "left": 0.08, "right": 0.94, "bottom": 0.14, "top": 0.9, "wspace": 0.4}))
    chosen = (selection.get("delta_um"), selection.get("window_um"))
    for ax, metric in zip(axes, metrics, strict=True):
        grid = table.pivot_table(index="delta_px", columns="window_px", values=metric,
                                 aggfunc="first", dropna=False)
        vals = np.array(grid.to_numpy(np.float64))  # a copy
        vals[~np.isfinite(vals)] = np.nan  # candidates not judged
        if metric == "predicted_mse":  # lower is better: the chosen one is the brightest
            fin = vals[np.isfinite(vals)]
            lo, hi = ((float(fin.min()), float(np.percentile(fin, 90))) if fin.size
                      else (0.0, 1.0))
            im = ax.imshow(vals, origin="lower", cmap="viridis_r", vmin=lo,
                           vmax=max(hi, lo + 1e-12), aspect="auto")
        else:
            top = max(1.0, float(np.nanmax(vals))) if np.isfinite(vals).any() else 1.0
            im = ax.imshow(vals, origin="lower", cmap="viridis", vmin=0.0, vmax=top,
                           aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index], fontsize=7)
        ax.set_xlabel("rate window s (px)", fontsize=8)
        ax.set_ylabel("mollifier radius δ (px)", fontsize=8)
        ax.set_title({"reliability": "split reliability of λ",
                      "predicted_r": "predicted correlation with truth",
                      "predicted_mse": "predicted squared error of λ\n(the rule: least)"}[metric],
                     fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.06, pad=0.03).ax.tick_params(labelsize=7)
        if None not in chosen:
            i = int(np.argmin(np.abs(grid.index.to_numpy(float) - chosen[0] / pixel_size_um)))
            j = int(np.argmin(np.abs(grid.columns.to_numpy(float) - chosen[1] / pixel_size_um)))
            ax.add_patch(_box(j, i))
    return fig


def _box(x: float, y: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)


def _colours(groups: Sequence[str]) -> dict[str, str]:
    return {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(dict.fromkeys(groups))}


def _strips(ax: Any, values: Sequence[np.ndarray], colours: Sequence[str], seed: int = 0
            ) -> None:
    """Jittered points per position with a black bar at each median."""
    rng = np.random.default_rng(seed)
    for x, (v, c) in enumerate(zip(values, colours, strict=True)):
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        ax.scatter(x + rng.uniform(-0.22, 0.22, v.size), v, s=9, color=c, alpha=0.7,
                   linewidths=0)
        ax.hlines(np.median(v), x - 0.3, x + 0.3, color="black", linewidth=1.5)


def distribution_figure(pixels: Mapping[str, np.ndarray], nuclei: pd.DataFrame | None,
                        group: Mapping[str, str] | None = None, value: str = "lambda_median"
                        ) -> Any:
    """λ per image: its identifiable pixels (box: quartiles, whiskers 5-95 %) and its nuclei
    (one point per nucleus, bar at the median). ``group`` colours images (a condition)."""
    names = list(pixels)
    group = dict(group or {})
    colours = _colours([group.get(n, "") for n in names])
    col = [colours[group.get(n, "")] for n in names]
    fig = _figure(max(6.0, min(24.0, 1.2 + 0.5 * len(names))), 5.6)
    ax_px, ax_nuc = fig.subplots(2, 1, sharex=True)
    data = [np.asarray(pixels[n], np.float64) for n in names]
    data = [d[np.isfinite(d)] for d in data]
    keep = [i for i, d in enumerate(data) if d.size]
    if keep:
        box = ax_px.boxplot([data[i] for i in keep], positions=keep, whis=(5, 95),
                            showfliers=False, widths=0.6, patch_artist=True)
        for i, patch in zip(keep, box["boxes"], strict=True):
            patch.set_facecolor(col[i])
            patch.set_alpha(0.6)
    ax_px.set_ylabel(f"pixel {LAMBDA_TITLE}", fontsize=8)
    ax_px.set_title("λ of identifiable pixels inside nuclei, per image", fontsize=9)
    per_nucleus = []
    for n in names:
        rows = (nuclei[nuclei["file"].astype(str) == n] if nuclei is not None
                and value in nuclei.columns else pd.DataFrame({value: []}))
        per_nucleus.append(pd.to_numeric(rows[value], errors="coerce").to_numpy(np.float64))
    _strips(ax_nuc, per_nucleus, col)
    ax_nuc.set_ylabel(f"nucleus median {LAMBDA_TITLE}", fontsize=8)
    ax_nuc.set_title("λ per nucleus (points), median per image (bars)", fontsize=9)
    ax_nuc.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    for ax in (ax_px, ax_nuc):
        ax.tick_params(labelsize=7)
    _legend(ax_px, colours)
    return fig


def _legend(ax: Any, colours: Mapping[str, str]) -> None:
    from matplotlib.patches import Patch

    named = {k: v for k, v in colours.items() if k}
    if named:
        ax.legend(handles=[Patch(color=v, label=k) for k, v in named.items()], fontsize=7,
                  loc="upper left", frameon=False)


def compare_figure(nuclei: pd.DataFrame, table: pd.DataFrame, by: str,
                   value: str = "lambda_median") -> Any:
    """Per-nucleus λ grouped by image within each condition (points; bar: image median),
    with each condition's median and bootstrap 95 % interval (diamond and line)."""
    conditions = list(table[by].astype(str))
    colours = _colours(conditions)
    df = nuclei.assign(**{by: nuclei[by].astype(str)})
    values, cols, ticks, labels, centres = [], [], [], [], []
    for c in conditions:
        files = list(dict.fromkeys(df.loc[df[by] == c, "file"].astype(str)))
        start = len(values)
        for f in files:
            v = pd.to_numeric(df.loc[(df[by] == c) & (df["file"].astype(str) == f), value],
                              errors="coerce").to_numpy(np.float64)
            values.append(v)
            cols.append(colours[c])
            ticks.append(len(values) - 1)
            labels.append(f)
        centres.append((start, len(values)))
        values.append(np.array([]))  # a gap before the condition summary
        cols.append(colours[c])
    fig = _figure(max(6.0, min(24.0, 1.5 + 0.45 * len(values))), 4.2)
    ax = fig.subplots()
    _strips(ax, values, cols)
    rows = table.set_index(table[by].astype(str))
    for c, (start, end) in zip(conditions, centres, strict=True):
        r = rows.loc[c]
        x = end  # the gap position
        ax.plot([x, x], [r["ci95_low"], r["ci95_high"]], color=colours[c], linewidth=3)
        ax.plot([x], [r["median_lambda"]], marker="D", color="black", markersize=6)
        ax.text((start + end) / 2, 1.01, f"{c}\n{int(r['n_units'])} {r['unit']}(s)",
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.7, len(values) - 0.3)
    ax.set_ylabel(f"nucleus median {LAMBDA_TITLE}", fontsize=8)
    ax.tick_params(labelsize=7)
    return fig
