"""Renderings that draw each localisation with its own precision, against one fixed blur.

Renderers differ in how they blur a localisation table. ``chromarate render`` uses one
Gaussian for all (the median precision). ThunderSTORM's "Normalized Gaussian" and similar
modes draw each localisation with its own precision, which varies with its photon count.
Then the noise of the rendering is a mixture of Gaussian kernels: the band above 0.2
cycles/px that the noise model fits holds the narrow ones, and the wide ones' power at low
frequencies is not extrapolated (``docs/bandwidth.md``, "Limits").

Localisations are drawn from a stress design's occupancy (Poisson per pixel, no blinking;
:func:`benchmarks.split_half.draw_table`), each with a precision ``median x exp(--spread x
N(0, 1))`` and jittered by it, then rendered
periodically two ways from the same table: with the median precision, and with each
localisation's own (in 16 quantile groups, each blurred with its median). For each: the
noise model's level and its power at 0.02-0.08 cycles/px over the truth (a second draw of
the table), and the closed form's r with the true λ and the coverage of its 90 % interval
through ``chromarate run``'s per-image path (:func:`pipeline.process.process_image`, the true
calibration; ``--forward-only`` adds the coverage without the std's attenuation bias).

    python benchmarks/rendering_kernels.py --seeds tuning \\
        --specs storm_smooth_1ch_dense,storm_lognormal_1ch_sparse,storm_smooth_2ch_px15

Only tuning seeds are for choosing anything (docs/stress.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.split_half import draw_table  # noqa: E402
from benchmarks.stress import seed_list  # noqa: E402
from pipeline.estimate.noise import estimate_noise_model  # noqa: E402
from pipeline.simulate.stress import STRESS_SPECS, make_stress_case  # noqa: E402

GROUPS = 16
LOW_BAND = (0.02, 0.08)
"""Cycles/px where the low-frequency noise is compared (the mollifier passes about this)."""


def draw(occupancy: np.ndarray, pixel_size_um: float, locs_per_px: float, precision_um: float,
         spread: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Localisations (y, x in px) and each one's precision (px), no blinking
    (:func:`benchmarks.split_half.draw_table`)."""
    d = draw_table(occupancy, pixel_size_um, locs_per_px, precision_um, 1.0, "c", rng,
                   spread=spread).data
    return (np.asarray(d.y) / pixel_size_um, np.asarray(d.x) / pixel_size_um,
            np.asarray(d.precision, float) / pixel_size_um)


def render(y: np.ndarray, x: np.ndarray, p: np.ndarray, shape: tuple[int, int],
           each: bool) -> np.ndarray:
    """Periodic rendering: one Gaussian of the median precision, or each localisation's own
    (in :data:`GROUPS` quantile groups)."""
    from scipy.ndimage import gaussian_filter

    ny, nx = shape
    if each:
        q = np.quantile(p, np.linspace(0, 1, GROUPS + 1))
        idx = np.clip(np.searchsorted(q, p, side="right") - 1, 0, GROUPS - 1)
        groups = [(idx == k, float(np.median(p[idx == k]))) for k in range(GROUPS)
                  if (idx == k).any()]
    else:
        groups = [(np.ones(p.size, bool), float(np.median(p)))]
    out = np.zeros(shape)
    for sel, sigma in groups:
        iy, ix = np.floor(y[sel]).astype(int) % ny, np.floor(x[sel]).astype(int) % nx
        counts = np.bincount(iy * nx + ix, minlength=ny * nx).reshape(ny, nx)
        out += gaussian_filter(counts.astype(float), sigma, mode="wrap")
    return out


def low_frequency_ratio(model, noise: np.ndarray) -> float:
    """The model's mean power over the truth's in :data:`LOW_BAND`."""
    power = np.abs(np.fft.rfft2(noise)) ** 2 / noise.size
    f = np.hypot(np.fft.fftfreq(noise.shape[0])[:, None], np.fft.rfftfreq(noise.shape[1])[None])
    band = (f > LOW_BAND[0]) & (f < LOW_BAND[1])
    return float(model.spectrum(noise.shape)[band].mean() / power[band].mean())


def fitted(image: np.ndarray, case, attenuation: bool = True) -> tuple[float, float]:
    """r of the closed form's λ with the truth and coverage of its 90 % interval, through the
    run's per-image path, 1 µm inside the border; ``attenuation``: the std's attenuation bias
    (``uncertainty.attenuation_bias``) on or off."""
    import tifffile

    from pipeline.config import Settings, UncertaintySettings
    from pipeline.io.omezarr_read import open_result_store
    from pipeline.process import process_image
    px = case.pixel_size_um
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img" / "x.ome.tif"
        path.parent.mkdir()
        tifffile.imwrite(path, image.astype(np.float32), ome=True, metadata={
            "axes": "CYX", "PhysicalSizeX": px, "PhysicalSizeY": px,
            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm",
            "Channel": {"Name": list(case.channel_names)}})
        settings = Settings(method="closed-form", channels=list(case.channel_names),
                            calibration=[{"offset": 0.0, "scale": 1.0}] * image.shape[0],
                            uncertainty=UncertaintySettings(attenuation_bias=attenuation))
        manifest = process_image(path, Path(tmp) / "res", settings)
        rates = np.asarray(open_result_store(manifest["store"])["rates"])
    b = int(round(1.0 / px))
    est, std, truth = rates[0][b:-b, b:-b], rates[1][b:-b, b:-b], case.lam[b:-b, b:-b]
    ok = np.isfinite(est) & np.isfinite(std)
    if case.foreground is not None:
        ok &= case.foreground[b:-b, b:-b]
    cover = float(np.mean(np.abs(est - truth)[ok] <= 1.645 * std[ok]))
    return float(np.corrcoef(est[ok], truth[ok])[0, 1]), cover


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="tuning")
    ap.add_argument("--specs", default="storm_smooth_1ch_dense,storm_lognormal_1ch_sparse,"
                    "storm_smooth_2ch_px15")
    ap.add_argument("--spread", type=float, default=0.4,
                    help="standard deviation of the log precision (0.4: about 10-40 nm "
                    "around 20 nm)")
    ap.add_argument("--out", type=Path, help="JSON rows")
    ap.add_argument("--forward-only", action="store_true",
                    help="also the coverage with the std's attenuation bias off")
    args = ap.parse_args(argv)
    rows = []
    for name in args.specs.split(","):
        spec = next(s for s in STRESS_SPECS if s.name == name)
        for seed in seed_list(args.seeds):
            case = make_stress_case(spec, seed)
            px, prec = case.pixel_size_um, spec.precision_nm * 1e-3
            row = {"spec": name, "seed": seed, "spread": args.spread}
            for each in (False, True):
                images = []
                for rep in range(2):
                    rng = np.random.default_rng(seed * 100 + rep)
                    images.append(np.stack([render(*draw(o, px, spec.locs_per_px, prec,
                                                         args.spread, rng), o.shape, each)
                                            / spec.locs_per_px for o in case.occupancy]))
                level, low = [], []
                for k in range(images[0].shape[0]):
                    noise = (images[0][k] - images[1][k]) / np.sqrt(2)
                    m = estimate_noise_model(images[0][k])
                    level.append(round(m.sigma / float(noise.std()), 3))
                    low.append(round(low_frequency_ratio(m, noise), 3))
                key = "each" if each else "median"
                r, cover = fitted(images[0], case)
                row[key] = {"level": level, "low_frequency": low, "r": round(r, 4),
                            "coverage": round(cover, 3)}
                if args.forward_only:
                    row[key]["coverage_forward_only"] = round(
                        fitted(images[0], case, attenuation=False)[1], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
