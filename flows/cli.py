"""``chromarate``: the command line.

Subcommands: ``run`` (rate maps for a folder of TIFFs), ``simulate`` (synthetic ground truth),
``bench`` (the paper's benchmarks). Exit codes: 0 all images done; 1 some images failed
(each named with its reason); 2 bad command line or settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chromarate", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="rate maps for every TIFF in a folder")
    r.add_argument("input", type=Path, help="folder of TIFFs (or one TIFF)")
    r.add_argument("--out", type=Path, required=True, help="results folder")
    r.add_argument("--config", type=Path, help="TOML or YAML settings; flags override it")
    r.add_argument("--method", choices=["closed-form", "neural"], default=None)
    r.add_argument("--channels", help="roles in C order, e.g. chromatin,heterochromatin")
    r.add_argument("--calibration", help="OFFSET:SCALE[,OFFSET:SCALE] or auto (default)")
    r.add_argument("--pixel-size", type=float, dest="pixel_size_um", help="um per pixel")
    r.add_argument("--delta", dest="delta_um", help="mollifier radius in um, or auto")
    r.add_argument("--window", dest="window_um", help="rate window (Gaussian sigma) in um, or auto")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    r.add_argument("--recursive", action="store_true", default=None)
    r.add_argument("--seed", type=int, default=None)

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

    b = sub.add_parser("bench", help="autograd vs mollifier layer on the paper's problems")
    b.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    b.add_argument("--out", type=Path, default=Path("bench_results"))
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    return p


def _settings_from_args(args: argparse.Namespace):
    from pipeline.config import load_settings, parse_calibration, parse_channels

    estimator = {}
    for key in ("delta_um", "window_um"):
        val = getattr(args, key)
        if val is not None:
            estimator[key] = val if val == "auto" else float(val)
    return load_settings(
        args.config,
        method=args.method,
        channels=parse_channels(args.channels) if args.channels else None,
        calibration=parse_calibration(args.calibration) if args.calibration else None,
        pixel_size_um=args.pixel_size_um,
        device=args.device,
        recursive=args.recursive,
        seed=args.seed,
        estimator=estimator or None,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from pipeline.io import InputError, discover_tiffs
    from pipeline.io.atomic import atomic_write_text, clean_partials
    from pipeline.process import process_image

    console = Console(stderr=True)
    settings = _settings_from_args(args)
    if args.input.is_file():
        images = [args.input]
    else:
        images = discover_tiffs(args.input, recursive=settings.recursive)
    args.out.mkdir(parents=True, exist_ok=True)
    clean_partials(args.out)
    done, failed = [], []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("images", total=len(images))
        for path in images:
            bar.update(task, description=path.name)
            try:
                done.append(process_image(path, args.out, settings))
            except (InputError, ValueError, NotImplementedError) as exc:
                failed.append({"image": str(path), "reason": str(exc)})
            bar.advance(task)
    atomic_write_text(
        args.out / "run.json",
        json.dumps({"settings": settings.model_dump(mode="json"), "images": done,
                    "failed": failed}, indent=2, default=str),
    )
    for item in done:
        p0 = item["planes"][0]
        console.print(f"[green]done[/] {Path(item['image']).name} -> {item['store']}  "
                      f"(delta {p0['delta_um']:.3f} um, window {p0['window_um']:.3f} um, "
                      f"median lambda {p0['lambda_median']:.3f})")
    for item in failed:
        console.print(f"[red]failed[/] {item['reason']}")
    console.print(f"rate maps: {args.out}/<stem>.ome.zarr (group 'rates'); record: {args.out}/run.json")
    return EXIT_SOME_FAILED if failed else EXIT_OK


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
    from pipeline.bench import run_benchmarks

    result = run_benchmarks(quick=args.quick, out_dir=args.out, device=args.device)
    print(json.dumps(result.get("summary", {}), indent=2, default=str))
    print(f"results: {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    from pipeline.io import InputError

    handlers = {"run": _cmd_run, "simulate": _cmd_simulate, "bench": _cmd_bench}
    try:
        return handlers[args.command](args)
    except (ValidationError, InputError, ValueError) as exc:
        print(f"chromarate {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
