"""chromarate: maps of the epigenetic rate ratio λ (methylation/acetylation) from chromatin images.

Subcommands: ``run`` (rate maps for a folder of TIFFs), ``simulate`` (synthetic ground truth),
``bench`` (the paper's benchmarks). Exit codes: 0 all images done; 1 some images failed
(each named with its reason and what to do; the others are finished) or the run itself
stopped on an I/O error; 2 bad command line or settings, an input folder with no TIFF, an
output folder that cannot be written, one that another run is writing to right now, one
inside the input folder, or one holding results made with other settings (without
``--overwrite``); nothing is written then. See docs/when-things-go-wrong.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from flows.cli_inputs import INPUT_COMMANDS, add_input_commands
from flows.cli_settings import (
    add_setting_options,
    setting_field,
    settings_from_args,
    settings_message,
    value_type,
)

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chromarate", description=__doc__.splitlines()[0],
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="rate maps for every TIFF in a folder")
    r.add_argument("input", type=Path, help="folder of TIFFs (or one TIFF)")
    r.add_argument("--out", type=Path, required=True, help="results folder")
    r.add_argument("--config", type=Path, help="TOML or YAML settings; flags override it")
    add_setting_options(r)
    r.add_argument("--samples", type=Path, help="sample sheet (CSV): a 'file' column (each "
                   "TIFF's name or stem) and any others (condition, replicate, ...), joined into "
                   "every table and the report; checked against the images before anything runs")
    r.add_argument("--overwrite", action="store_true",
                   help="replace results in --out made with other settings (without it, "
                   "such a folder is refused and nothing is written)")

    s = sub.add_parser("simulate", help="write synthetic images and their ground truth")
    s.add_argument("outdir", type=Path, help="image folder to create")
    s.add_argument("--truth-dir", type=Path, help="default: OUTDIR_truth (outside the images)")
    s.add_argument("--kinds", default="smooth,lognormal,step")
    s.add_argument("--channels", default="1,2", help="channel counts, e.g. 1,2")
    s.add_argument("--noise", type=float, default=0.02, help="field noise std at mid intensity")
    s.add_argument("--size", type=int, default=256, help="image side in pixels")
    s.add_argument("--pixel-size", type=float, default=0.02, help="um per pixel")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--metadata", choices=["ome", "imagej"], default="ome")

    v = sub.add_parser("view", help="open results in napari (needs chromarate[napari])")
    v.add_argument("path", type=Path, nargs="?", help="results folder or <stem>.ome.zarr")

    rp = sub.add_parser("report", help="rebuild RESULTS/report.html from existing results")
    rp.add_argument("results", type=Path, help="results folder of chromarate run")

    c = sub.add_parser("compare", help="compare λ between conditions of the sample sheet")
    c.add_argument("results", type=Path, help="results folder of chromarate run --samples")
    c.add_argument("--by", default="condition", help="sample-sheet column (default: condition)")
    c.add_argument("--reference", help="the condition others are compared with (default: the "
                   "first in the sample sheet)")
    c.add_argument("--unit", default="image", help="what counts once: image (default), or a "
                   "sample-sheet column such as replicate; nuclei never count as independent")

    add_input_commands(sub)

    b = sub.add_parser("bench", help="autograd vs mollifier layer (and DeepXDE, if installed: "
                                     "chromarate[bench]) on the paper's problems")
    b.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    b.add_argument("--out", type=Path, default=Path("bench_results"))
    b.add_argument("--device", choices=value_type(setting_field("device").annotation)[1],
                   default="auto", help="where the benchmarks run (default: auto)")
    return p


_EPILOG = """examples:
  chromarate run images/ --out results/ --samples sheet.csv   rate maps, tables, report.html
  chromarate view results/                                    look at them in napari
  chromarate compare results/ --by condition --reference control
  chromarate report results/                                  rebuild results/report.html
  chromarate check images/ [--channels ...]                   how run reads each file (no work)
  chromarate channel-offset beads.tif                         the --channel-offset of two channels
  chromarate merge-channels raw/ --out merged/ --suffixes _c0,_c1   one file per channel -> CYX
  chromarate split-series positions.ome.tif --out split/      one TIFF per image series
  chromarate render locs.csv --pixel-size 0.02 --out field.ome.tif   localisations -> image
see README.md and docs/ (docs/report.md: the report, sample sheets and comparisons)"""

class _Display:
    """Rich progress: one bar over images, one over the tiles of the current plane."""

    def __init__(self, bar, n_images: int) -> None:
        self.bar = bar
        self.images = bar.add_task("images", total=n_images)
        self.tiles = bar.add_task("tiles", total=1, visible=False)

    def __call__(self, ev: dict) -> None:
        name, stage = Path(ev.get("image", "")).name, ev.get("stage")
        if stage in ("done", "skipped"):  # the run's own events print these (_cmd_run)
            return
        if stage == "tiles":
            self.bar.update(self.tiles, visible=True, total=ev["total"], completed=ev["done"],
                            description=f"{name} plane {ev['plane']} tiles")
        elif stage:
            self.bar.update(self.images, description=f"{name}: {stage}")


def _print_qc(console, record: dict) -> None:
    """Per image: its QC flags (the ``flags`` column of summary_images.csv) and warnings."""
    from rich.markup import escape

    from pipeline.summary import store_notes

    flagged = []
    for item in record["images"]:
        name = escape(Path(item["image"]).name)
        try:
            flags, notes = store_notes(item["store"])
        except (OSError, KeyError, ValueError):
            continue
        table = record.get("summaries", {}).get("images")
        if table and Path(table).is_file():
            import pandas as pd

            df = pd.read_csv(table, dtype=str, keep_default_na=False)
            rows = df[df["file"] == Path(item["image"]).name] if "flags" in df else df[:0]
            for text in rows.get("flags", []):
                flags += [f for f in str(text).split(";") if f and f not in flags]
        for note in notes:
            console.print(f"[yellow]warning[/] {name}: {escape(note)}", highlight=False,
                          soft_wrap=True)
        if flags:
            flagged.append(f"  {name}: {', '.join(flags)}")
    if flagged:
        console.print("QC flags (column 'flags' of summary_images.csv; meanings in "
                      "docs/your-own-images.md):", highlight=False)
        for line in flagged:
            console.print(line, highlight=False, soft_wrap=True)


def _not_from_this_run(out: Path, record: dict) -> list[str]:
    """Names of result stores in ``out`` that this run did not produce or confirm."""
    mine = {Path(i["store"]).resolve() for i in record["images"]}
    return sorted(p.name for p in out.glob("*.ome.zarr") if p.resolve() not in mine)


def _cmd_run(args: argparse.Namespace) -> int:
    from flows.env import prefect_env_defaults

    prefect_env_defaults(args.verbose)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flows.flow import run  # imports Prefect only if images are left to compute

    console = Console(stderr=True)
    settings = settings_from_args(args)
    samples = _check_samples(args, settings)  # a bad sheet: refused before anything runs

    def report(ev: dict) -> None:  # one line per image, as soon as it is known
        name = escape(Path(ev.get("image", "")).name)
        if ev["event"] == "failed":
            bar.console.print(f"[red]failed[/] {name}: {escape(ev['reason'])}",
                              highlight=False, soft_wrap=True)
        elif ev["event"] in ("done", "skipped"):
            bar.console.print(f"{'skipped (up to date)' if ev['event'] == 'skipped' else 'done'}"
                              f" {name}", highlight=False)
        if ev["event"] == "start":
            bar.update(display.images, total=ev["total"])
        elif ev["event"] in ("done", "skipped", "failed"):
            bar.advance(display.images)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        display = _Display(bar, 1)
        # holds the folder's run lock; refuses a bad --out before anything is written
        record = run(args.input, args.out, settings, progress=report, stages=display,
                     overwrite=args.overwrite, samples=samples)
    n_skip = sum(i["skipped"] for i in record["images"])
    console.print(f"{len(record['images'])} image(s) finished ({n_skip} up to date), "
                  f"{len(record['failed'])} failed, in {record['seconds']:.0f} s")
    _print_qc(console, record)
    if record["failed"]:
        console.print("failed images are listed with their reasons under 'failed' in "
                      f"{escape(str(args.out))}/run.json; fix them and run the same command again "
                      "(finished images are skipped)", highlight=False, soft_wrap=True)
    if others := _not_from_this_run(args.out, record):
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        console.print(f"note: {len(others)} result(s) in {escape(str(args.out))} are not from this run "
                      f"(earlier runs, other inputs or settings) and are not in its "
                      f"summaries: {escape(shown)}", highlight=False, soft_wrap=True)
    if record["images"]:
        out = args.out
        console.print(f"rate maps : {out}/<stem>.ome.zarr  (image 'rates': λ mean, λ std)")
        console.print(f"tables    : {out}/summary_images.csv, summary_tiles.csv, "
                      "summary_nuclei.csv, summary_domains.csv")
        console.print(f"record    : {out}/run.json")
        if (out / "report.html").is_file():
            console.print(f"report    : {out}/report.html  (figures; open in a browser)")
        console.print(f"view      : napari {record['images'][0]['store']}  "
                      "(needs napari-ome-zarr: pip install 'chromarate\\[napari]')")
    return EXIT_SOME_FAILED if record["failed"] else EXIT_OK


def _check_samples(args: argparse.Namespace, settings):
    """The ``--samples`` sheet, checked against the input images (None without one)."""
    if args.samples is None or not args.input.exists():  # run() names a missing input
        return None
    from pipeline.compare import match_samples, read_sample_sheet
    from pipeline.io import discover_tiffs

    sheet = read_sample_sheet(args.samples)
    images = ([args.input] if args.input.is_file()
              else discover_tiffs(args.input, recursive=settings.recursive))
    match_samples(sheet, images, args.samples)
    return sheet


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import ReportUnavailable, write_report

    try:
        print(write_report(args.results))
    except (FileNotFoundError, ReportUnavailable) as exc:
        print(f"chromarate report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.report import ReportUnavailable, write_comparison_outputs

    try:
        paths = write_comparison_outputs(args.results, args.by, reference=args.reference,
                                         unit=args.unit)
    except (FileNotFoundError, ReportUnavailable) as exc:
        print(f"chromarate compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in paths.values():
        print(path)
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.simulate import simulate_folder

    paths = simulate_folder(
        args.outdir,
        truth_dir=args.truth_dir,
        kinds=tuple(k.strip() for k in args.kinds.split(",")),
        channels=tuple(int(c) for c in args.channels.split(",")),
        noise=args.noise,
        shape=(args.size, args.size),
        pixel_size_um=args.pixel_size,
        seed=args.seed,
        metadata=args.metadata,
    )
    for p in paths:
        print(p)
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    # the harness lives beside the library (benchmarks/paper), imported only when asked
    from benchmarks.paper import run_benchmarks

    result = run_benchmarks(quick=args.quick, out_dir=args.out, device=args.device)
    print(json.dumps(result.get("summary", {}), indent=2, default=str))
    print(f"results: {args.out}")
    return EXIT_OK


def _cmd_view(args: argparse.Namespace) -> int:
    # the one place flows reaches the GUI layer: lazily, and allowed by name in pyproject.toml
    from plugins.view import main as view_main

    return view_main(args.path)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse; an unknown option is reported by its subcommand's parser (its usage, not the
    top-level one) with the closest known option."""
    import difflib

    args, extras = parser.parse_known_args(argv)
    if extras:
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub = subs.choices[args.command]
        known = [o for a in sub._actions for o in a.option_strings]
        guess = difflib.get_close_matches(extras[0].split("=")[0], known, n=1)
        sub.error(f"unrecognized arguments: {' '.join(extras)}"
                  + (f" (did you mean {guess[0]}?)" if guess else ""))
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from pipeline.io import InputError

    handlers = {"run": _cmd_run, "simulate": _cmd_simulate, "bench": _cmd_bench,
                "view": _cmd_view, "report": _cmd_report, "compare": _cmd_compare}
    try:
        if args.command in INPUT_COMMANDS:  # True: every file written
            return EXIT_OK if INPUT_COMMANDS[args.command](args) else EXIT_SOME_FAILED
        return handlers[args.command](args)
    except ValidationError as exc:
        print(f"chromarate {args.command}: {settings_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (InputError, ValueError) as exc:
        print(f"chromarate {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the run itself (not one image) could not go on: disk full, ...
        print(f"chromarate {args.command}: {exc}. Fix the cause and run the same command "
              "again: finished images are kept", file=sys.stderr)
        return EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
