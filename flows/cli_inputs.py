"""The commands that prepare inputs for ``chromarate run``: ``check`` (how run will read each
file, before any work), ``channel-offset`` (the offset of two channels, measured on beads),
``merge-channels`` (one file per channel into one image), ``split-series`` (one image per
series of a multi-position file), ``render`` (localisation tables into an image) and
``split-half`` (the std's noise part checked on two halves of a table's frames). Each handler
returns whether everything it was given was done (or, for check, readable); :mod:`flows.cli`
turns that into the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["INPUT_COMMANDS", "add_input_commands"]


def add_input_commands(sub: argparse._SubParsersAction) -> None:
    """Add the input-preparation subcommands to ``sub``."""
    from flows.cli_settings import add_setting_options

    ck = sub.add_parser("check", help="how run will read each TIFF (layout, pixel size, "
                        "channels and roles), or why it refuses it: metadata only, seconds")
    ck.add_argument("input", type=Path, help="folder of TIFFs (or one TIFF)")
    ck.add_argument("--config", type=Path, help="TOML or YAML settings; flags override it")
    add_setting_options(ck)
    o = sub.add_parser("channel-offset", help="the offset between the two channels of a bead "
                       "image, as the --channel-offset to pass to run")
    o.add_argument("beads", type=Path, help="TIFF of beads (or anything identical in both "
                   "channels) seen in both channels")
    o.add_argument("--pixel-size", type=float, metavar="UM",
                   help="micrometres per pixel (overrides the TIFF metadata)")
    o.add_argument("--channels", metavar="ROLES",
                   help="the channels' roles in C order, as for run, e.g. "
                   "chromatin,heterochromatin,ignore (default: as run reads them: the file's "
                   "channel names, else chromatin,heterochromatin)")

    mc = sub.add_parser("merge-channels", help="channels saved as separate files (cell_c0.tif, "
                        "cell_c1.tif) into one two-channel TIFF per image, for run")
    mc.add_argument("folder", type=Path, help="folder of one-channel TIFFs")
    mc.add_argument("--out", type=Path, required=True, help="folder for the merged TIFFs "
                    "(not FOLDER)")
    mc.add_argument("--suffixes", required=True, metavar="S0,S1",
                    help="the end of each channel's file name, in C order, chromatin first "
                    "(run's default --channels), e.g. _c0,_c1 or _DAPI,_H3K9me3")
    mc.add_argument("--pixel-size", type=float, metavar="UM",
                    help="micrometres per pixel (overrides the TIFF metadata)")

    rd = sub.add_parser("render", help="localisation tables (ThunderSTORM, SMAP, NIS-Elements "
                        "N-STORM) rendered as one TIFF, for run")
    rd.add_argument("tables", type=Path, nargs="+", help="localisation table(s) of one field; "
                    "each table's channels (a channel column), or each table, become channels "
                    "in the order given")
    rd.add_argument("--pixel-size", type=float, required=True, metavar="UM",
                    help="micrometres per pixel of the rendering (0.015-0.06 is where "
                    "chromarate's accuracy was measured; 0.02 is typical)")
    rd.add_argument("--out", type=Path, required=True, help="the TIFF to write "
                    "(NAME.ome.tif), with NAME.render.json beside it")
    rd.add_argument("--blur-nm", type=float, metavar="NM",
                    help="the rendering Gaussian's standard deviation (default: the median "
                    "localisation precision of the tables; 0: counts without a blur)")

    sh = sub.add_parser("split-half", help="does λ's std hold on your localisation data? Two "
                        "halves of the frames fitted alike: their difference against their "
                        "std")
    sh.add_argument("tables", type=Path, nargs="+", help="localisation table(s) of one field, "
                    "with frames (as for render)")
    sh.add_argument("--pixel-size", type=float, required=True, metavar="UM",
                    help="micrometres per pixel of the rendering")
    sh.add_argument("--blur-nm", type=float, metavar="NM", help="as for render")
    sh.add_argument("--block-frames", type=int, default=None, metavar="N",
                    help="frames per block of the split (default: 100; halves are the even "
                    "and the odd blocks)")
    sh.add_argument("--channels", metavar="ROLES", help="the channels' roles, as for run")
    sh.add_argument("--calibration", metavar="OFFSET:SCALE", help="as for run (of the "
                    "whole table's rendering)")
    sh.add_argument("--json", type=Path, metavar="FILE", help="also write the record here")

    ss = sub.add_parser("split-series", help="a file of several image series (a multi-position "
                        "OME-TIFF) into one TIFF per series, for run")
    ss.add_argument("files", type=Path, nargs="+", help="TIFF(s) of several image series")
    ss.add_argument("--out", type=Path, required=True, help="folder for the series' TIFFs "
                    "(not the files' own folder)")
    ss.add_argument("--pixel-size", type=float, metavar="UM",
                    help="micrometres per pixel (overrides the TIFF metadata)")


def _cmd_check(args: argparse.Namespace) -> bool:
    from rich.console import Console
    from rich.markup import escape

    from flows.cli_settings import settings_from_args
    from pipeline.image_check import check_image
    from pipeline.io import InputError, discover_tiffs

    settings = settings_from_args(args)
    files = ([args.input] if args.input.is_file() else
             discover_tiffs(args.input, recursive=settings.recursive))
    console = Console(highlight=False, soft_wrap=True)
    refused = 0
    for path in files:
        try:
            c = check_image(path, settings)
        except InputError as exc:
            refused += 1
            console.print(f"[red]refused[/] {escape(path.name)}: "
                          f"{escape(exc.reason)}. {escape(exc.hint)}")
            continue
        info = c.info
        names = info.channel_names
        read = ", ".join(f"{i}{f' ({names[i]!r})' if names else ''} as {role}" for i, role in
                         zip(c.channel_index or range(info.n_channels), c.roles, strict=True))
        console.print(
            f"[green]ok[/] {escape(path.name)}: {info.axes} "
            f"{' x '.join(str(n) for n in info.shape)} (axes: {info.axes_source}), "
            f"{info.pixel_size_um:.4g} µm per pixel ({info.pixel_size_source}); channel "
            f"{escape(read)} ({c.roles_source})")
        for note in c.notes:
            console.print(f"    note: {escape(note)}")
    console.print(f"{len(files) - refused} of {len(files)} file(s) readable"
                  + (f", {refused} refused" if refused else "") + "; nothing was written")
    return not refused


def _cmd_channel_offset(args: argparse.Namespace) -> bool:
    import numpy as np

    from pipeline.channels import choose_channels
    from pipeline.config_parse import parse_channels
    from pipeline.io import InputError, inspect_tiff, read_planes
    from pipeline.registration import bead_offset

    declared = parse_channels(args.channels)
    info = inspect_tiff(args.beads, pixel_size_um=args.pixel_size)
    try:
        roles, _, _, index = choose_channels(info.n_channels, info.channel_names, declared)
    except ValueError as exc:
        raise InputError(args.beads, str(exc), "Pass --channels, one word per channel "
                         "(chromatin, heterochromatin or ignore)") from exc
    if len(roles) != 2:
        raise InputError(args.beads, f"it has {info.n_channels} channel(s)",
                         "A bead image for --channel-offset needs both channels")
    planes = read_planes(args.beads, info)
    planes = planes if index is None else planes[:, list(index)]
    out = bead_offset(np.asarray(planes.compute()), roles, info.pixel_size_um)
    dy, dx = out["offset_px"]
    print(f"{args.beads.name}: the heterochromatin channel lies ({dy:+.3f}, {dx:+.3f}) px "
          f"from the chromatin channel (Y, X; median of {out['planes']} plane(s)"
          + (", largest deviation of a plane ({:.3f}, {:.3f}) px".format(
              *out["max_deviation_px"]) if out["planes"] > 1 else "") + ")")
    print(out["option"])
    return True


def _cmd_merge_channels(args: argparse.Namespace) -> bool:
    from pipeline.merge_channels import merge_folder

    suffixes = tuple(s.strip() for s in args.suffixes.split(","))
    res = merge_folder(args.folder, suffixes, args.out, pixel_size_um=args.pixel_size)
    for path in res.written:
        print(f"wrote {path}")
    for line in res.refused:
        print(f"refused {line}", file=sys.stderr)
    if res.unpaired:
        print(f"{len(res.unpaired)} file(s) without a file for every suffix {list(suffixes)}, "
              "not merged: " + ", ".join(p.name for p in res.unpaired), file=sys.stderr)
    print(f"{len(res.written)} image(s) merged into {args.out}; run: chromarate run "
          f"{args.out} --out RESULTS")
    return bool(res.written) and not res.refused


def _cmd_render(args: argparse.Namespace) -> bool:
    import json

    from pipeline.io import InputError, write_tiff
    from pipeline.io.atomic import atomic_write_text
    from pipeline.localisations import render

    if args.out.suffix.lower() not in (".tif", ".tiff"):
        print(f"--out {args.out}: name the TIFF to write (NAME.ome.tif)", file=sys.stderr)
        return False
    tables = _tables(args.tables)
    blur = None if args.blur_nm is None else args.blur_nm * 1e-3
    try:
        image, names, record = render(tables, args.pixel_size, blur_um=blur)
    except ValueError as exc:
        raise InputError(args.tables[0], str(exc), "") from exc
    record["tables"] = [str(p) for p in args.tables]
    out = write_tiff(args.out, image, axes="CYX", pixel_size_um=args.pixel_size,
                     compression="zlib", channel_names=names)
    sidecar = out.with_name(out.name.split(".")[0] + ".render.json")
    atomic_write_text(sidecar, json.dumps(record, indent=1) + "\n")
    for c in record["channels"]:
        prec = (f", precision median {c['precision_median_nm']:g} nm"
                if c["precision_median_nm"] is not None else "")
        print(f"channel {c['name']!r} ({c['table']}, {c['format']}): {c['localisations']} "
              f"localisations{prec}")
    ny, nx = record["shape"]
    print(f"wrote {out}: {len(names)} channel(s) of {ny} x {nx} pixels at {args.pixel_size:g} "
          f"µm, blurred by {record['blur_nm']:g} nm ({record['blur_source']}); record in "
          f"{sidecar.name}")
    print(f"run: chromarate run {out.parent} --out RESULTS"
          + (" --channels ROLES (which channel is which: the names say no role)"
             if len(names) > 1 else ""))
    return True


def _tables(paths: list[Path]) -> list:
    """The localisation tables at ``paths``; an unreadable one is an ``InputError`` naming it."""
    from pipeline.io import InputError
    from pipeline.localisations import read_localisations

    tables = []
    for path in paths:
        try:
            tables.append(read_localisations(path))
        except (OSError, ValueError) as exc:
            raise InputError(path, str(exc).removeprefix(f"{path}: "), "") from exc
    return tables


def _cmd_split_half(args: argparse.Namespace) -> bool:
    import json

    from pipeline.config import Settings
    from pipeline.config_parse import parse_calibration, parse_channels
    from pipeline.io import InputError
    from pipeline.io.atomic import atomic_write_text
    from pipeline.split_half import BLOCK_FRAMES, split_half_check

    tables = _tables(args.tables)
    given = {"channels": parse_channels(args.channels)} | (
        {"calibration": parse_calibration(args.calibration)} if args.calibration else {})
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    try:
        rec = split_half_check(tables, args.pixel_size, settings,
                               blur_um=None if args.blur_nm is None else args.blur_nm * 1e-3,
                               block_frames=args.block_frames or BLOCK_FRAMES)
    except ValueError as exc:
        raise InputError(args.tables[0], str(exc), "") from exc
    rec["tables"] = [str(p) for p in args.tables]
    if args.json:
        atomic_write_text(args.json, json.dumps(rec, indent=1) + "\n")
    print(f"halves of {rec['block_frames']}-frame blocks: "
          + "; ".join(f"{a} and {b} localisations" for a, b in zip(*rec["localisations_halves"],
                                                                   strict=True))
          + f"; fitted at delta {rec['delta_um']:g} µm, window {rec['window_um']:g} µm "
          f"(the whole table's automatic choice), calibration {rec['calibration_source']}")
    if rec["within_90"] is None:
        print("no pixel is identifiable in both halves: nothing to compare")
        return False
    w, zr = rec["within_90"], rec["z_rms"]
    verdict = ("the noise part of the std fits these data" if 0.85 <= w <= 0.95 else
               "the std is too narrow for this noise" if w < 0.85 else
               "the std is wider than this noise needs")
    print(f"{rec['pixels']} pixels: the halves' difference within its 90 % interval on "
          f"{100 * w:.1f} % (0.90 expected), rms z {zr:.2f} (1 expected): {verdict}. "
          "A bias common to both halves (smoothing, calibration) is not seen by this check")
    return True


def _cmd_split_series(args: argparse.Namespace) -> bool:
    from pipeline.split_series import split_series

    written, refused = 0, 0
    for path in args.files:
        res = split_series(path, args.out, pixel_size_um=args.pixel_size)
        for out in res.written:
            print(f"wrote {out}")
        for line in res.refused:
            print(f"refused {path.name}: {line}", file=sys.stderr)
        written, refused = written + len(res.written), refused + len(res.refused)
    print(f"{written} series written to {args.out}; run: chromarate run {args.out} --out "
          "RESULTS")
    return bool(written) and not refused


INPUT_COMMANDS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "check": _cmd_check,
    "channel-offset": _cmd_channel_offset,
    "merge-channels": _cmd_merge_channels,
    "render": _cmd_render,
    "split-half": _cmd_split_half,
    "split-series": _cmd_split_series,
}
"""Subcommand name -> handler (True: every file given was done)."""
