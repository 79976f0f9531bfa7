"""Regenerate docs/benchmarks.md: the paper's benchmarks, autograd, DeepXDE and the mollifier.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/paper_benchmarks.py            # full, ~15-20 min
    PYTHONPATH=. .venv/bin/python benchmarks/paper_benchmarks.py --quick    # < 5 min, JSON only
    PYTHONPATH=. .venv/bin/python benchmarks/paper_benchmarks.py --peer     # DeepXDE, ~6 min

``--peer`` (needs ``pip install 'chromarate[bench]'``) replaces only the DeepXDE section of
``docs/benchmarks.md`` and writes ``docs/benchmarks_peer.json``; the full run keeps that
section (and the large-image ones) when it rewrites the rest.

The full run writes ``docs/benchmarks.md``, ``docs/benchmarks.json`` and
``docs/img/bench_*.png``. ``--threads`` defaults to 1: on the shared two-core development
machine two threads stalled for 0.4-1 s per operation whenever other jobs ran (a 4th-order
autograd step measured 1.4 s with one thread and up to 40 s with two).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.paper import config_for, run_benchmarks, summarize, write_report  # noqa: E402
from benchmarks.paper.report import render_peer_section, update_section  # noqa: E402


def _printer(event: dict) -> None:
    kind = event.get("event")
    stamp = time.strftime("%H:%M:%S")
    if kind == "train":
        if event["iteration"] % 200 == 0 or event["arm"] != "mollifier":
            print(f"{stamp} {event['label']:<32} {event['arm']:<9} step {event['iteration']:>5} "
                  f"{event['train_s']:7.1f} s  r={event['r']:.3f}", flush=True)
    elif kind == "scaling":
        for row in event["rows"]:
            t = row.get("s_per_iter")
            mem = row.get("peak_bytes")
            print(f"{stamp} {event['label']:<12} {row['arm']:<9} "
                  f"{'skipped' if t is None else f'{t * 1e3:9.1f} ms/step'}"
                  f"{'' if mem is None else f'  {mem / 1e6:8.1f} MB'}", flush=True)
    elif kind == "done":
        print(f"{stamp} done in {event['wall_s'] / 60:.1f} min", flush=True)
    else:
        print(f"{stamp} {event}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the < 5 min preset (no report)")
    parser.add_argument("--smoke", action="store_true", help="the tiny test preset")
    parser.add_argument("--peer", action="store_true",
                        help="the DeepXDE comparison: its section of docs/benchmarks.md only")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: docs/ for the full run, else a temp dir)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--report", action="store_true", help="write markdown even if quick")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render the markdown and plots from OUT/benchmarks.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = config_for("smoke") if args.smoke else config_for("peer") if args.peer else None
    mode = ("smoke" if args.smoke else "peer" if args.peer else "quick" if args.quick
            else "full")
    if args.peer and args.render_only:
        out = args.out or ROOT / "docs"
        results = json.loads((out / "benchmarks_peer.json").read_text())
        print(f"wrote {update_section(out / 'benchmarks.md', render_peer_section(results))}",
              flush=True)
        return 0
    if args.peer:
        out = args.out or ROOT / "docs"
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="chromarate-bench-peer-"))
        results = run_benchmarks(quick=True, out_dir=tmp, device=args.device,
                                 progress=_printer, config=config, threads=args.threads,
                                 report=False)
        (out / "benchmarks_peer.json").write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {update_section(out / 'benchmarks.md', render_peer_section(results))}",
              flush=True)
        return 0
    out = args.out or (ROOT / "docs" if mode == "full" else
                       Path(tempfile.gettempdir()) / f"chromarate-bench-{mode}")
    if args.render_only:
        path = out / "benchmarks.json"
        results = json.loads(path.read_text())
        if "summary" not in results:  # results saved before the summary existed
            results["summary"] = summarize(results)
            path.write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {write_report(results, out, img_dir=out / 'img')}", flush=True)
        return 0
    run_benchmarks(
        quick=args.quick, out_dir=out, device=args.device, progress=_printer,
        config=config, threads=args.threads, report=True if args.report else None,
        img_dir=out / "img",
    )
    print(f"results in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
