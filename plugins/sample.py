"""Sample data: the synthetic cases of ``sample_data/``, their rate maps, and the true λ.

The rate map is computed on first use (about a second: exact calibration from the truth file,
the bandwidths the automatic choice takes for these cases) and cached in the temporary folder.
Without ``sample_data/`` (an installed wheel), the same case is simulated with the
parameters that made it.

Examples
--------
>>> sorted(SAMPLES)
['lognormal_2ch_s0', 'smooth_1ch_s0', 'step_1ch_s0']
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from plugins.layers import LAMBDA_COLORMAP, LAMBDA_UNITS, LayerData, store_layers

__all__ = [
    "SAMPLES",
    "lognormal_sample",
    "sample_layers",
    "sample_paths",
    "smooth_sample",
    "step_sample",
]

SAMPLES = {
    "smooth_1ch_s0": ("smooth", 1),
    "lognormal_2ch_s0": ("lognormal", 2),
    "step_1ch_s0": ("step", 1),
}
_BANDWIDTH_UM = {"delta_um": 0.14, "window_um": 0.2}  # the auto choice on these cases
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"


def _cache_dir() -> Path:
    root = os.environ.get("CHROMARATE_CACHE") or Path(tempfile.gettempdir()) / "chromarate-sample"
    return Path(root)


def sample_paths(name: str = "smooth_1ch_s0") -> tuple[Path, Path]:
    """The image and truth files of a sample case (simulated into the cache if not shipped)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(SAMPLES)}")
    image, truth = SAMPLE_DIR / "images" / f"{name}.tif", SAMPLE_DIR / "truth" / f"{name}.npz"
    if image.is_file() and truth.is_file():
        return image, truth
    from pipeline.simulate import simulate_folder

    kind, channels = SAMPLES[name]
    folder = _cache_dir() / "simulated" / "images"
    image, truth = folder / f"{name}.tif", folder.with_name("truth") / f"{name}.npz"
    if not (image.is_file() and truth.is_file()):
        simulate_folder(folder, truth_dir=truth.parent, kinds=(kind,), channels=(channels,),
                        noise=0.02, shape=(256, 256), pixel_size_um=0.02, seed=0)
    return image, truth


def _store_for(image: Path, truth: dict) -> Path:
    """Run the default method once per (image, settings, version); return the store."""
    from pipeline import __version__
    from pipeline.config import Settings
    from pipeline.process import process_image, result_path

    settings = Settings(calibration=truth["calibration"], estimator=_BANDWIDTH_UM)
    stat = image.stat()
    key = hashlib.sha1(json.dumps(
        [str(image), stat.st_size, stat.st_mtime_ns, settings.model_dump(mode="json"), __version__]
    ).encode()).hexdigest()[:12]
    out = _cache_dir() / key
    store = result_path(image, out)
    if not store.exists():
        process_image(image, out, settings)
    return store


def sample_layers(name: str = "smooth_1ch_s0") -> list[LayerData]:
    """Layers of a sample: the store's layers (raw, λ std, λ mean, identifiable) and the
    true λ (hidden, same colormap and contrast as λ mean)."""
    from pipeline.simulate import load_truth

    image, truth_path = sample_paths(name)
    truth = load_truth(truth_path)
    layers = store_layers(_store_for(image, truth), prefix=name)
    mean = next(kw for _, kw, _ in layers if kw["metadata"]["chromarate"]["role"] == "lambda_mean")
    px = truth["pixel_size_um"]
    layers.append((truth["lam"], {
        "name": f"{name} λ truth",
        "colormap": LAMBDA_COLORMAP,
        "contrast_limits": mean["contrast_limits"],
        "blending": "translucent",
        "opacity": mean["opacity"],
        "scale": (px, px),
        "units": ("micrometer", "micrometer"),
        "axis_labels": ("y", "x"),
        "visible": False,
        "metadata": {"chromarate": {
            "role": "lambda_truth", "truth": str(truth_path), "stem": name,
            "pixel_size_um": px, "units": LAMBDA_UNITS,
        }},
    }, "image"))
    return layers


def smooth_sample() -> list[LayerData]:
    """Smooth λ, one channel (heterochromatin), with its truth."""
    return sample_layers("smooth_1ch_s0")


def lognormal_sample() -> list[LayerData]:
    """Log-normal λ, two channels (chromatin, heterochromatin), with its truth."""
    return sample_layers("lognormal_2ch_s0")


def step_sample() -> list[LayerData]:
    """Two-region step in λ, one channel, with its truth."""
    return sample_layers("step_1ch_s0")
