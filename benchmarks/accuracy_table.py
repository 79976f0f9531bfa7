"""Both methods side by side on the stress suite's test seeds -> docs/accuracy.md.

Reads the JSON that ``benchmarks/stress.py`` writes beside its tables (one per method) and
writes one page: per case r, rmse, coverage of the 90 % interval and seconds per megapixel for
the closed form and the neural method, the gap to the best fixed bandwidth found with the
truth, and the issue's targets checked.

    python benchmarks/stress.py --seeds test --method closed-form --out /tmp/cf.md
    python benchmarks/stress.py --seeds test --method neural --no-best \
        --specs 'cam_smooth_1ch,cam_lognormal_2ch,...' --out /tmp/nn.md
    python benchmarks/accuracy_table.py /tmp/cf.json /tmp/nn.json --out docs/accuracy.md \
        --note-file docs/stress_runs/accuracy_note.md

The neural method costs thousands of seconds per megapixel on a CPU, so its run usually covers
a subset of the specs (and perhaps of the seeds); the page says which, and compares the two
methods on the cases both ran.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _f(x, fmt: str = ".3f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, fmt)


def _targets(rows: list[dict], name: str) -> list[str]:
    mod = [r for r in rows if r["noise"] == "moderate"]
    rs = np.array([r["r"] for r in mod], float)
    gaps = np.array([r.get("r_best", np.nan) - r["r"] for r in rows], float)
    cov = np.array([r["coverage"] for r in rows], float)
    c = cov[np.isfinite(cov)]
    w = np.array([r.get("std_rmse", np.nan) for r in rows], float)
    out = [f"- **{name}**, moderate noise ({len(mod)} cases): r min {_f(np.nanmin(rs))} "
           f"(target >= 0.95), median {_f(np.nanmedian(rs))} (target >= 0.98)."]
    if np.isfinite(gaps).any():
        out.append(f"- **{name}**, gap to the best fixed bandwidth (with the truth): within "
                   f"0.02 on {int(np.sum(gaps <= 0.02))} of {int(np.isfinite(gaps).sum())} "
                   f"cases (target: all); worst {_f(np.nanmax(gaps), '+.3f')}.")
    if c.size:
        inside = (c >= 0.85) & (c <= 0.95)
        out.append(f"- **{name}**, coverage of the 90 % interval in 0.85-0.95 on "
                   f"{int(inside.sum())} of {c.size} cases ({inside.mean():.0%}; target >= 90 %), "
                   f"below 0.80 on {int((c < 0.80).sum())} (target: none), above 0.95 on "
                   f"{int((c > 0.95).sum())}; median {np.median(c):.2f}"
                   + (f"; median std/rmse {np.nanmedian(w):.2f}." if np.isfinite(w).any()
                      else "."))
    return out


def _coverage_in(rows: list[dict]) -> tuple[int, int, float]:
    """``(in 0.85-0.95, cases with a coverage, median coverage)``."""
    c = np.array([r["coverage"] for r in rows], float)
    c = c[np.isfinite(c)]
    return (int(((c >= 0.85) & (c <= 0.95)).sum()), int(c.size),
            float(np.median(c)) if c.size else float("nan"))


def _neural_scope(cf: dict, nn: dict) -> str:
    """Which seeds and specs the neural run covers, in words."""
    if not nn["rows"]:
        return "no neural run"
    specs = list(dict.fromkeys(r["spec"] for r in nn["rows"]))
    all_specs = {r["spec"] for r in cf["rows"]}
    seeds = nn["seed_values"]
    which = ("all specs" if all_specs and set(specs) >= all_specs else
             f"{len(specs)} of the {len(all_specs) or '?'} specs: "
             + ", ".join(f"`{s}`" for s in specs))
    return f"neural: seed{'s' if len(seeds) > 1 else ''} {seeds}, {which}; a subset for its CPU cost"


def _same_cases(pairs: list[tuple[dict, dict]]) -> list[str]:
    """Both methods summarised on the cases both ran."""
    cfr = [a for a, _ in pairs]
    nnr = [b for _, b in pairs]
    kc, nc, _ = _coverage_in(cfr)
    kn, nn_, _ = _coverage_in(nnr)
    ratio = np.array([b["s_per_mp"] / a["s_per_mp"] for a, b in pairs], float)
    lower = sum(b["rmse"] < a["rmse"] for a, b in pairs)
    out = [f"In short: median r {_f(np.nanmedian([b['r'] for b in nnr]))} for the neural method "
           f"against {_f(np.nanmedian([a['r'] for a in cfr]))} for the closed form; coverage of "
           f"the 90 % interval in 0.85-0.95 on {kn} of {nn_} cases against {kc} of {nc}; rmse "
           f"lower on {lower} of {len(pairs)}; seconds per megapixel "
           f"{_f(np.nanmedian(ratio), '.0f')}x the closed form's (median of the per-case "
           f"ratios, {_f(np.nanmin(ratio), '.0f')}-{_f(np.nanmax(ratio), '.0f')}x).", ""]
    for name, rows in (("closed form", cfr), ("neural", nnr)):
        rs = np.array([r["r"] for r in rows], float)
        rm = np.array([r["rmse"] for r in rows], float)
        sp = np.array([r["s_per_mp"] for r in rows], float)
        w = np.array([r.get("std_rmse", np.nan) for r in rows], float)
        k, n, med = _coverage_in(rows)
        out.append(f"- **{name}** on these {len(rows)} cases: r median {_f(np.nanmedian(rs))}, "
                   f"min {_f(np.nanmin(rs))}; rmse median {_f(np.nanmedian(rm))}; coverage in "
                   f"0.85-0.95 on {k} of {n}, below 0.80 on "
                   f"{int(sum(r['coverage'] < 0.80 for r in rows))}, above 0.95 on "
                   f"{int(sum(r['coverage'] > 0.95 for r in rows))}, median {_f(med, '.2f')}"
                   + (f"; median std/rmse {np.nanmedian(w):.2f}" if np.isfinite(w).any() else "")
                   + f"; s/MP median {_f(np.nanmedian(sp), '.0f')}.")
    d = np.array([b["r"] - a["r"] for a, b in pairs], float)
    e = np.array([b["rmse"] - a["rmse"] for a, b in pairs], float)
    out.append(f"- **neural minus closed form**, case by case: r median {_f(np.nanmedian(d), '+.3f')} "
               f"(neural at or above on {int(np.sum(d >= 0))} of {len(pairs)}; worst "
               f"{_f(np.nanmin(d), '+.3f')}, best {_f(np.nanmax(d), '+.3f')}); rmse median "
               f"{_f(np.nanmedian(e), '+.3f')} (neural lower on {int(np.sum(e < 0))}).")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("closed_form", type=Path, help="stress.py JSON of the closed form")
    ap.add_argument("neural", type=Path, nargs="?", help="stress.py JSON of the neural method")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy.md")
    ap.add_argument("--note", default="", help="a paragraph after the held-out one (e.g. "
                    "which run is from when)")
    ap.add_argument("--note-file", type=Path, help="the --note paragraph(s) read from a file "
                    "(kept beside the runs, so the page can be regenerated)")
    args = ap.parse_args(argv)
    if args.note_file is not None:
        args.note = args.note_file.read_text().strip()
    cf = json.loads(args.closed_form.read_text())
    nn = json.loads(args.neural.read_text()) if args.neural else {"rows": [], "seed_values": []}
    by_case = {r["case"]: r for r in nn["rows"]}
    lines = [
        "# Accuracy: both methods on the stress suite's test seeds",
        "",
        f"Generated by `python benchmarks/accuracy_table.py` ({time.strftime('%Y-%m-%d')}) from "
        "`benchmarks/stress.py` runs. Do not edit by hand.",
        "",
        f"**Held out.** Test seeds {cf['seed_values']} (closed form: all "
        f"{len({r['spec'] for r in cf['rows']})} specs; {_neural_scope(cf, nn)}) "
        "of the stress suite (`pipeline/simulate/stress.py`, "
        "[stress.md](stress.md)): camera images at other pixel sizes, PSF blur, dim and bright "
        "photon levels and calibration errors; STORM-like renderings with correlated noise; "
        "whole nuclei in a dark background. No rule, constant or default was chosen on these "
        "seeds; every choice was made on the tuning seeds ([uncertainty.md](uncertainty.md), "
        "[bandwidth.md](bandwidth.md), [neural.md](neural.md), "
        "[accuracy_tuning.md](accuracy_tuning.md)). The tables were generated once, after the "
        "choices. If anything is changed after looking at them, these seeds become tuning "
        "data and fresh test seeds must be drawn (stress.md says how).",
        "",
        *([args.note, ""] if args.note else []),
        "Each case is calibrated as `chromarate run` does it (`pipeline.calibration."
        "calibrate_plane`, with the pairs a user would pass, including the case's calibration "
        "error; two channels' pairs are checked against the image, and a contradicted pair, "
        "kept as by default, adds its term to the std) and fitted by "
        "`pipeline.estimate.fit_plane`, the fit `chromarate run` uses, with the nuclei the "
        "run's segmentation finds. Scored on identifiable pixels at "
        "least 1 um inside the nucleus edge and the image border. r: Pearson correlation with "
        "the true λ; coverage: fraction of those pixels whose true λ lies in mean ± 1.645 std "
        "(target 0.85-0.95); std/rmse: the median std over the rmse (the interval's width; "
        "about 1 when the std has the error's size); best fixed: the closed form's best bandwidth on the grid, found "
        "with the truth, its least squares weighted as the product's fit (only pixels farther "
        "inside the nuclei found than the derivative support) (no user can reach it; the grid "
        "is the 7 x 7 one in pixels, "
        "`DEFAULT_DELTAS_PX` x `DEFAULT_WINDOWS_PX`, at every pixel size, while the automatic "
        "choice's candidates are that grid in micrometres, so at pixels other than 0.02 um the "
        "two sets differ and the choice can lie outside the reference grid); s/MP: seconds per megapixel of the fit on 2 "
        "shared CPU cores.",
        "",
        "## Against the targets",
        "",
        *_targets(cf["rows"], "closed form (the default)"),
        *(_targets(nn["rows"], "neural") if nn["rows"] else []),
    ]
    pairs = [(r, by_case[r["case"]]) for r in cf["rows"] if r["case"] in by_case]
    if pairs:
        d = np.array([b["r"] - a["r"] for a, b in pairs], float)
        lines.append(f"- **neural against closed form** on the same {len(pairs)} cases: r "
                     f"difference median {_f(np.nanmedian(d), '+.3f')} (target >= 0), at or above "
                     f"on {int(np.sum(d >= 0))}; worst {_f(np.nanmin(d), '+.3f')}, best "
                     f"{_f(np.nanmax(d), '+.3f')}.")
        lines += [
            "",
            "## Neural and closed form on the same cases",
            "",
            f"The {len(pairs)} cases both methods ran (the same images, seeds and evaluation "
            "pixels; the closed form's rows are those of the full table below).",
            "",
            *_same_cases(pairs),
            "",
            "| case | noise | r cf | r neural | rmse cf | rmse neural | coverage cf | "
            "coverage neural | std/rmse cf | std/rmse neural | s/MP cf | s/MP neural |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a, b in pairs:
            lines.append(
                f"| {a['case']} | {a['noise']} | {_f(a['r'])} | {_f(b['r'])} | {_f(a['rmse'])} | "
                f"{_f(b['rmse'])} | {_f(a['coverage'], '.2f')} | {_f(b['coverage'], '.2f')} | "
                f"{_f(a.get('std_rmse', np.nan), '.2f')} | {_f(b.get('std_rmse', np.nan), '.2f')} | "
                f"{_f(a['s_per_mp'], '.0f')} | {_f(b['s_per_mp'], '.0f')} |")
    lines += [
        "",
        "## Per case",
        "",
        "| case | noise | r cf | rmse cf | coverage cf | std/rmse cf | r best fixed | gap | "
        "s/MP cf | r neural | rmse neural | coverage neural | s/MP neural |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cf["rows"]:
        n = by_case.get(r["case"], {})
        best = r.get("r_best", np.nan)
        lines.append(
            f"| {r['case']} | {r['noise']} | {_f(r['r'])} | {_f(r['rmse'])} | "
            f"{_f(r['coverage'], '.2f')} | {_f(r.get('std_rmse', np.nan), '.2f')} | "
            f"{_f(best)} | {_f(best - r['r'], '+.3f')} | "
            f"{r['s_per_mp']:.0f} | {_f(n.get('r', np.nan))} | {_f(n.get('rmse', np.nan))} | "
            f"{_f(n.get('coverage', np.nan), '.2f')} | "
            f"{_f(n.get('s_per_mp', np.nan), '.0f')} |")
    if nn["rows"] and not pairs:  # the neural run is on other seeds: its own table
        lines += [
            "",
            f"## Neural, seeds {nn['seed_values']}",
            "",
            "Run on other seeds than the closed form above (see the seed log in "
            "[stress.md](stress.md)); no case in common, so no side-by-side comparison.",
            "",
            "| case | noise | r | rmse | coverage | s/MP |",
            "|---|---|---|---|---|---|",
        ]
        for n in nn["rows"]:
            lines.append(f"| {n['case']} | {n['noise']} | {_f(n['r'])} | {_f(n['rmse'])} | "
                         f"{_f(n['coverage'], '.2f')} | {_f(n['s_per_mp'], '.0f')} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
