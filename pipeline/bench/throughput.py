"""End-to-end throughput (megapixels per minute) and peak memory of the per-image stages.

Every measurement runs :func:`pipeline.process.process_image` (ingest → denoise → fit →
segment → assemble) on one TIFF in a **fresh subprocess**, so imports, caches and the memory
high-water mark of one run never leak into the next. Wall time is measured inside the child
around ``process_image`` (interpreter start and imports excluded); the peak resident set size
is the child's own ``getrusage(RUSAGE_SELF).ru_maxrss`` at its end. The child runs this file
as a script, so it does not import :mod:`pipeline.bench` (torch, matplotlib).

``legacy=True`` runs the child with the pre-streaming :func:`legacy_fit_plane` swapped in for
:func:`pipeline.tiling.fit_plane` (every tile extracted and kept at once), so the memory
saved by streaming can be shown side by side in one run. It is a benchmark reference only.

Synthetic images come from :func:`pipeline.simulate.simulate_case`; a bigger image is a
mirrored tiling of one simulated case (mirroring keeps the fields continuous at the seams),
written with :func:`pipeline.io.write_tiff`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["legacy_fit_plane", "measure", "synthetic_image"]

PIXEL_SIZE_UM = 0.02


def synthetic_image(path: str | Path, size: int, *, base: int = 512, seed: int = 0,
                    noise: float = 0.02) -> Path:
    """Write a two-channel ``size x size`` uint16 TIFF built from one ``base``² simulated case.

    The case is mirrored into a ``2 base`` period and tiled, then cropped to ``size``.
    """
    from pipeline.io import write_tiff
    from pipeline.simulate import simulate_case

    b = min(base, size)
    img = simulate_case(kind="lognormal", channels=2, noise=noise, shape=(b, b), seed=seed,
                        pixel_size_um=PIXEL_SIZE_UM).image
    period = np.concatenate([img, img[:, :, ::-1]], axis=2)
    period = np.concatenate([period, period[:, ::-1]], axis=1)
    reps = -(-size // (2 * b))
    data = np.tile(period, (1, reps, reps))[:, :size, :size]
    return write_tiff(path, np.ascontiguousarray(data), axes="CYX", pixel_size_um=PIXEL_SIZE_UM)


def measure(image: str | Path, *, method: str = "closed-form", denoise: str = "nl-means",
            legacy: bool = False, threads: int | None = None, timeout_s: float = 900.0
            ) -> dict[str, Any]:
    """Run every stage on ``image`` in a fresh subprocess; seconds, MP/min and peak RSS.

    Returns
    -------
    dict
        ``method``, ``denoise``, ``legacy``, ``shape``, ``megapixels``, ``seconds`` (the
        ``process_image`` call), ``mp_per_min``, ``timings_s`` (per stage), ``peak_rss_mb``.
    """
    args = {"image": str(image), "method": method, "denoise": denoise, "legacy": legacy}
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="chromarate-bench-") as out:
        args["out"] = out
        # run this file as a script: the child does not import pipeline.bench (torch, plots)
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return _result(args, proc, stdout, stderr)


def _result(args: dict, proc: subprocess.Popen, stdout: bytes, stderr: bytes) -> dict[str, Any]:
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n"
                           f"{stderr.decode(errors='replace')[-3000:]}")
    res = json.loads(stdout.decode().strip().splitlines()[-1])
    mp = res["shape"][-1] * res["shape"][-2] * res["n_planes"] / 1e6
    return {"method": args["method"], "denoise": args["denoise"], "legacy": args["legacy"],
            "shape": res["shape"], "megapixels": mp, "seconds": res["seconds"],
            "mp_per_min": 60.0 * mp / res["seconds"], "timings_s": res["timings_s"],
            "peak_rss_mb": res["peak_rss_mb"]}


def _child(spec: str) -> None:
    """Body of one measurement (``python pipeline/bench/throughput.py '<json>'``)."""
    import resource

    from pipeline import process
    from pipeline.config import Settings

    args = json.loads(spec)
    if args["legacy"]:
        process.fit_plane = legacy_fit_plane  # type: ignore[assignment]
    settings = Settings(method=args["method"], device="cpu", run={"denoise": args["denoise"]})
    t = time.perf_counter()
    res = process.process_image(args["image"], args["out"], settings, force=True)
    seconds = time.perf_counter() - t
    # ru_maxrss of this process (KiB on Linux): the whole run's high-water mark
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    shape = res["shape"]
    n_planes = int(res.get("n_planes") or 1)
    print(json.dumps({"seconds": seconds, "timings_s": res["timings_s"], "shape": shape,
                      "n_planes": n_planes, "peak_rss_mb": peak}))


def legacy_fit_plane(fields: np.ndarray, model: Any, pixel_size_um: float, settings: Any, *,
                     selection_fields: np.ndarray | None = None, plane: int = 0,
                     max_batch_px: int = 6_000_000, progress: Any = None) -> dict[str, Any]:
    """:func:`pipeline.tiling.fit_plane` as it was before streaming (benchmark reference).

    Extracts every tile with its halo at once and keeps ``lam``, ``A²`` and the denominator of
    every tile before blending; the neural fit gets all tiles in one call. Same results.
    """
    from pipeline.estimate import linear_terms, local_least_squares
    from pipeline.mollifier import Mollifier
    from pipeline.tiling import (
        _neural,
        _select,
        blend_tiles,
        extract_tiles,
        feather_weights,
        halo_px,
        plan_tiles,
    )

    t0 = time.perf_counter()
    est = settings.estimator
    fields = np.asarray(fields, dtype=np.float64)
    sel_src = fields if selection_fields is None else selection_fields
    delta, window, selection = _select(sel_src, model, pixel_size_um, est, settings.seed)
    support = Mollifier(delta, pixel_size_um, model.derivatives).support_px
    plan = plan_tiles(fields.shape[-2:], tile_px=settings.run.tile_px,
                      overlap_px=settings.run.overlap_px,
                      halo_px=halo_px(support, window, pixel_size_um))
    tiles = extract_tiles(fields, plan)
    n = len(plan.tiles)
    per = max(1, max_batch_px // (plan.window[0] * plan.window[1]))
    lam_t, a2_t, den_t = (np.empty((n,) + plan.window) for _ in range(3))
    for s in range(0, n, per):
        terms = linear_terms(tiles[s : s + per], model, delta, pixel_size_um, backend=est.backend)
        lam, den = local_least_squares(terms, window, pixel_size_um,
                                       lambda_min=est.lambda_min, lambda_max=est.lambda_max)
        lam_t[s : s + per], den_t[s : s + per], a2_t[s : s + per] = lam, den, terms.a**2
    weights = feather_weights(plan)
    lam, a2, den = (blend_tiles(v, plan, weights=weights) for v in (lam_t, a2_t, den_t))
    inside = np.zeros(plan.shape, bool)
    if 2 * support < min(plan.shape):
        inside[support:-support, support:-support] = True
    else:
        inside[:] = True
    ref, ref_den = float(np.median(a2[inside])), float(np.median(den[inside]))
    frac = est.identifiable_fraction
    ident = (a2 > frac * ref) & (den > frac * ref_den) & np.isfinite(lam)
    std = np.full(plan.shape, np.nan)
    diagnostics: list[dict] = [{} for _ in range(n)]
    if settings.method == "neural":
        out = _neural(tiles, model, pixel_size_um, settings, lam_t, (delta, window), progress)
        lam = blend_tiles(np.asarray(out["mean"]), plan, weights=weights)
        std = blend_tiles(np.asarray(out["std"]), plan, weights=weights)
        diagnostics = list(out.get("diagnostics") or diagnostics)
    lam, std = np.where(ident, lam, np.nan), np.where(ident, std, np.nan)
    rows = []
    for t, diag in zip(plan.tiles, diagnostics, strict=True):
        y0, y1, x0, x1 = t.valid
        part, ok = lam[y0:y1, x0:x1], ident[y0:y1, x0:x1]
        rows.append({"plane": plane, "tile": t.index, "y0_px": y0, "y1_px": y1, "x0_px": x0,
                     "x1_px": x1, "fraction_identifiable": float(ok.mean()),
                     "lambda_median": float(np.median(part[ok])) if ok.any() else None,
                     **{k: v for k, v in diag.items() if isinstance(v, int | float | str)}})
    record = {"delta_um": delta, "window_um": window, "selection": selection,
              "tiling": plan.to_dict(), "fraction_identifiable": float(ident.mean()),
              "seconds": time.perf_counter() - t0}
    return {"mean": lam.astype(np.float32), "std": std.astype(np.float32),
            "identifiable": ident, "fields": fields.astype(np.float32), "record": record,
            "tiles": rows}


if __name__ == "__main__":
    _child(sys.argv[1])
