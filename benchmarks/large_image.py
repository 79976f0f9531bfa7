"""Peak memory and wall time of one large image (default 8192 x 8192) -> docs/benchmarks.md.

Writes a two-channel uint16 TIFF (a mirrored tiling of one 512² ``simulate_case``, as in
``benchmarks.endtoend.synthetic_image``), then runs the stages of ``chromarate run``
(``pipeline.process``: ingest → denoise → fit → segment → assemble) on it in a **fresh
subprocess**, with default settings (closed-form, nl-means, segmentation on). The child
reports, after each stage, its own ``ru_maxrss`` high-water mark and the peak of a 0.2 s
``/proc/self/statm`` sampler during that stage, so the stage that sets the peak is named. The
parent also reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` as a cross-check.

    python benchmarks/large_image.py                 # 8192², about 10-20 min on 2 shared cores
    python benchmarks/large_image.py --size 1024 --no-doc   # a quick look, no doc written

``main(argv)`` returns the result dict; with ``--no-doc`` it writes nothing but ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))
STAGES = ("ingest", "denoise", "fit", "segment", "assemble")


def section(size: int, method: str, field: str = "tiling") -> str:
    """The doc heading of one (size, method, field) run; each has its own section."""
    return f"## Large image: {size}², {method}" + (", field of nuclei" if field == "nuclei"
                                                  else "")


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


class _Sampler(threading.Thread):
    """Peak RSS per stage label, sampled every ``period`` s (catches short-lived peaks that the
    stage-end ``ru_maxrss`` would attribute to the stage anyway; this gives the stage's own)."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period, self.label, self.peaks = period, "start", {}
        self.timeline: list[tuple[float, str, float]] = []  # (s, stage, MB) every ~2 s
        self._halt = threading.Event()

    def run(self) -> None:
        t0, last = time.perf_counter(), -1e9
        while not self._halt.is_set():
            r = _rss_now_mb()
            self.peaks[self.label] = max(self.peaks.get(self.label, 0.0), r)
            t = time.perf_counter() - t0
            if t - last >= 2.0:
                self.timeline.append((round(t, 1), self.label, round(r)))
                last = t
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _child(spec: str) -> None:
    """One run of every stage (``python benchmarks/large_image.py --child '<json>'``)."""
    from pipeline import process
    from pipeline.config import Settings

    args = json.loads(spec)
    cfg: dict[str, Any] = {"method": args["method"], "device": "cpu",
                           "run": {"denoise": args["denoise"]}}
    for key, value in args.get("overrides", {}).items():
        cfg[key] = (cfg.get(key, {}) | value) if isinstance(value, dict) else value
    settings = Settings(**cfg)
    sampler = _Sampler()
    sampler.start()
    stages: dict[str, dict[str, float]] = {}
    t_all = time.perf_counter()

    def stage(name: str, fn, *a, **k):
        sampler.label = name
        t = time.perf_counter()
        out = fn(*a, **k)
        stages[name] = {"seconds": time.perf_counter() - t, "maxrss_mb": _maxrss_mb(),
                        "rss_after_mb": _rss_now_mb()}
        return out

    manifest = stage("ingest", process.ingest, args["image"], args["out"], settings)
    den = stage("denoise", process.denoise_image, manifest, settings)
    fit = stage("fit", process.fit_image, manifest, settings, den)
    seg = stage("segment", process.segment_image, manifest, settings, fit)
    stage("assemble", process.assemble, manifest, settings, den, fit, seg)
    seconds = time.perf_counter() - t_all
    sampler.stop()
    for name, peak in sampler.peaks.items():
        if name in stages:
            stages[name]["sampled_peak_mb"] = peak
    print(json.dumps({"seconds": seconds, "stages": stages, "peak_rss_mb": _maxrss_mb(),
                      "shape": manifest["shape"], "rss_timeline": sampler.timeline}))


def run_child(image: Path, out: Path, *, method: str = "closed-form", denoise: str = "nl-means",
              overrides: dict | None = None, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run :func:`_child` in a fresh interpreter; its JSON plus the parent's view of it.

    ``overrides`` are extra :class:`~pipeline.config.Settings` fields (one level merged)."""
    spec = json.dumps({"image": str(image), "out": str(out), "method": method,
                       "denoise": denoise, "overrides": overrides or {}})
    before = _maxrss_mb(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", spec],
                          capture_output=True, timeout=timeout_s, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode(errors='replace')[-3000:]}")
    res = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    children = _maxrss_mb(resource.RUSAGE_CHILDREN)
    # RUSAGE_CHILDREN is the max over all waited-for children: only meaningful if it rose
    res["children_maxrss_mb"] = children if children > before else None
    res["wall_s_with_startup"] = wall
    return res


NUCLEUS_CASE = ("nuc_cam_lognormal_2ch", 11)
"""The field of nuclei tiles this stress case (a whole nucleus in a dark background) at a
tuning seed."""


def write_image(path: Path, size: int, field: str = "tiling") -> Path:
    """``tiling``: a mirrored tiling of one 512² case (chromatin everywhere, no background);
    ``nuclei``: a grid of copies of one whole nucleus in a dark background (``NUCLEUS_CASE``),
    a field of many nuclei as users image them."""
    from benchmarks.endtoend import synthetic_image

    if field == "tiling":
        return synthetic_image(path, size)
    import numpy as np

    from pipeline.io import write_tiff
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    name, seed = NUCLEUS_CASE
    case = make_stress_case(next(s for s in STRESS_SPECS if s.name == name), seed)
    img = np.asarray(case.image)
    reps = -(-size // img.shape[-1])
    data = np.tile(img, (1, reps, reps))[:, :size, :size]
    return write_tiff(path, np.ascontiguousarray(data), axes="CYX",
                      pixel_size_um=case.pixel_size_um)


def _markdown(r: dict[str, Any]) -> str:
    n = r["size"]
    plane_mb = n * n * 8 / 2**20
    peak = r["peak_rss_mb"]
    field = r.get("field", "tiling")
    image_text = (
        "a mirrored tiling of one 512² `simulate_case`, lognormal λ, noise 0.02, 0.02 µm/px"
        if field == "tiling" else
        "a grid of copies of one whole nucleus in a dark background, one per 256² tile: "
        f"stress case `{NUCLEUS_CASE[0]}` at tuning seed {NUCLEUS_CASE[1]}, 0.03 µm/px")
    lines = [
        section(n, r["method"], field),
        "",
        f"Generated by `python benchmarks/large_image.py` ({r['date']}, {r['machine']}, "
        f"{r['cpus']} CPUs shared with other jobs, CPU only). Raw numbers: "
        f"[{r.get('json_name', 'large_image.json')}]({r.get('json_name', 'large_image.json')}).",
        "",
        f"One two-channel {n} x {n} uint16 TIFF ({r['tiff_mb']:.0f} MB on disk; {image_text}) "
        "run through "
        "the stages of `chromarate run` (`pipeline.process`: ingest → denoise → fit → segment → "
        "assemble, writing the OME-Zarr store) in a fresh subprocess: method "
        f"`{r['method']}`, {r['denoise']} denoising, 256 px tiles, segmentation on, other settings "
        "default. Peak RSS is "
        "the child's `ru_maxrss` after each stage (a high-water mark, so it only grows) and the "
        "peak of a 0.2 s RSS sampler during each stage.",
        "",
        f"- wall time: **{r['seconds']:.0f} s** for the stages "
        f"({r['wall_s_with_startup']:.0f} s with interpreter start and imports)",
        f"- peak RSS: **{peak:.0f} MB** = {peak / plane_mb:.1f}x one float64 plane "
        f"({plane_mb:.0f} MB), {peak * 2**20 / (n * n):.0f} bytes per pixel",
        "",
        "| stage | seconds | peak RSS during stage (MB) | high-water mark after (MB) | RSS after (MB) |",
        "|---|---|---|---|---|",
    ]
    for s in STAGES:
        st = r["stages"][s]
        lines.append(f"| {s} | {st['seconds']:.1f} | {st.get('sampled_peak_mb', float('nan')):.0f} | "
                     f"{st['maxrss_mb']:.0f} | {st['rss_after_mb']:.0f} |")
    if r.get("notes"):
        lines += ["", r["notes"]]
    return "\n".join(lines) + "\n"


def _update_doc(doc: Path, text: str) -> None:
    """Replace the section with ``text``'s heading (up to the next ``## ``), or append it."""
    old = doc.read_text() if doc.exists() else ""
    heading = text.split("\n", 1)[0]
    if heading + "\n" in old:
        before, rest = old.split(heading + "\n", 1)
        after = rest.split("\n## ", 1)[1] if "\n## " in rest else None
        new = before.rstrip("\n") + "\n\n" + text + ("\n## " + after if after is not None else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    doc.write_text(new)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--method", default="closed-form")
    ap.add_argument("--field", default="tiling", choices=("tiling", "nuclei"),
                    help="the image: a tiling of chromatin, or a field of many nuclei")
    ap.add_argument("--denoise", default="nl-means")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "large_image.json")
    ap.add_argument("--no-doc", action="store_true", help="write only --json")
    ap.add_argument("--notes", default="", help="a paragraph appended to the doc section")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the TIFF and the store")
    ap.add_argument("--settings", default="{}",
                    help="JSON of extra Settings fields, e.g. '{\"estimator\": {\"delta_um\": 0.06}}'")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chromarate-large-", dir=args.tmp) as tmp:
        t = time.perf_counter()
        image = write_image(Path(tmp) / f"synthetic_{args.size}.tif", args.size, args.field)
        write_s = time.perf_counter() - t
        res = run_child(image, Path(tmp) / "out", method=args.method, denoise=args.denoise,
                        overrides=json.loads(args.settings))
        res["tiff_mb"] = image.stat().st_size / 2**20
    res |= {"size": args.size, "method": args.method, "denoise": args.denoise,
            "field": args.field,
            "json_name": args.json.name if args.json else None,
            "write_tiff_s": write_s, "date": time.strftime("%Y-%m-%d"),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "settings_overrides": json.loads(args.settings),
            "plane_float64_mb": args.size**2 * 8 / 2**20, "notes": args.notes}
    print(json.dumps(res, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if not args.no_doc:
        _update_doc(args.doc, _markdown(res))
    return res


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
