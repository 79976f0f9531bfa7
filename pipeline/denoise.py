"""Self-calibrated denoising of raw channels, lazily over dask.

The parameters are chosen once per image and channel, without ground truth, by
scikit-image's :func:`~skimage.restoration.calibrate_denoiser` (J-invariance, Noise2Self) on a
central crop of the first plane; then the plain filter with those parameters runs over the whole
stack with :func:`dask.array.map_overlap`. The overlap depth comes from the filter: a
non-local-means pixel reads its ``patch_distance`` search window of ``patch_size`` patches, a
Gaussian ``4 sigma`` (scikit-image's truncation). So chunked and whole-plane results agree.

Photon counts (integer data, ``anscombe="auto"``) are variance-stabilised first with the
Anscombe transform ``2 sqrt(x - offset + 3/8)`` and mapped back with its asymptotically
unbiased inverse ``(a / 2)^2 - 1/8``, so that one filter strength suits bright and dim pixels.

Examples
--------
>>> import dask.array as da
>>> rng = np.random.default_rng(0)
>>> clean = np.full((1, 1, 64, 64), 50.0)
>>> noisy = clean + rng.normal(0, 5, clean.shape)
>>> params = calibrate(noisy[0], method="gaussian", anscombe="off")
>>> out = denoise_planes(da.from_array(noisy, chunks=(1, 1, 32, 32)), params).compute()
>>> bool(out.std() < noisy.std() / 2)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from .config import ANSCOMBE, DENOISE, Anscombe, DenoiseMethod

__all__ = ["DenoiseParams", "calibrate", "denoise_planes", "depth_px"]

log = logging.getLogger(__name__)

Method = DenoiseMethod
_NL_PATCH, _NL_DISTANCE = 5, 6
_NL_H_FACTORS = (0.3, 0.5, 0.7, 0.9, 1.2)
_GAUSS_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class DenoiseParams:
    """The calibrated denoiser for one image: one parameter dict per channel."""

    method: Method
    anscombe: bool
    offsets: tuple[float, ...]
    channel_params: tuple[dict[str, float], ...]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def depth_px(self) -> int:
        """Overlap that :func:`denoise_planes` gives each chunk."""
        return max((depth_px(self.method, p) for p in self.channel_params), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "depth_px": self.depth_px}


def depth_px(method: Method, params: dict[str, float]) -> int:
    """Pixels of context one output pixel of the filter reads.

    Examples
    --------
    >>> depth_px("nl-means", {"patch_size": 5, "patch_distance": 6}), depth_px("gaussian", {"sigma": 1.5})
    (8, 6)
    """
    if method == "nl-means":
        return int(params["patch_size"]) // 2 + int(params["patch_distance"])
    if method == "gaussian":
        return int(4.0 * float(params["sigma"]) + 0.5)
    return 0


def _forward(x: np.ndarray, offset: float, anscombe: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 2.0 * np.sqrt(np.maximum(x - offset, 0.0) + 0.375) if anscombe else x


def _inverse(a: np.ndarray, offset: float, anscombe: bool) -> np.ndarray:
    return (a / 2.0) ** 2 - 0.125 + offset if anscombe else a


def _filter(x: np.ndarray, method: Method, params: dict[str, float]) -> np.ndarray:
    from skimage.filters import gaussian
    from skimage.restoration import denoise_nl_means

    if method == "nl-means":
        return denoise_nl_means(x, patch_size=int(params["patch_size"]),
                                patch_distance=int(params["patch_distance"]),
                                h=float(params["h"]), sigma=float(params["sigma"]),
                                fast_mode=True, preserve_range=True)
    if method == "gaussian":
        return gaussian(x, sigma=float(params["sigma"]), mode="reflect", preserve_range=True)
    return x


def calibrate(
    plane: np.ndarray,
    *,
    method: Method = DENOISE,
    anscombe: Anscombe = ANSCOMBE,
    offsets: tuple[float, ...] | None = None,
    crop_px: int = 128,
) -> DenoiseParams:
    """Choose the denoiser's parameters for each channel of one ``(C, Y, X)`` plane.

    Parameters
    ----------
    plane : array, shape (C, Y, X)
        Raw intensities of a representative plane.
    method : {"nl-means", "gaussian", "none"}
        Non-local means (``h`` calibrated) or a Gaussian (``sigma`` calibrated).
    anscombe : {"auto", "on", "off"}
        Variance stabilisation; ``auto`` applies it to integer (photon count) data.
    offsets : tuple of float, optional
        Dark level per channel, subtracted before the Anscombe transform (the calibration
        offsets when the user gave them; else each channel's minimum).
    crop_px : int
        Side of the central crop calibration runs on (its cost grows with the area).
    """
    data = np.asarray(plane)
    use_anscombe = anscombe == "on" or (anscombe == "auto" and data.dtype.kind in "ui")
    n_c = data.shape[0]
    if method == "none":
        return DenoiseParams("none", False, (0.0,) * n_c, ({},) * n_c, {"method": "none"})
    from skimage.restoration import calibrate_denoiser, estimate_sigma

    h, w = data.shape[-2:]
    y0, x0 = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
    crop = data[:, y0 : y0 + crop_px, x0 : x0 + crop_px].astype(np.float64)
    if offsets is None:
        offsets = tuple(float(c.min()) for c in crop)
    params, losses = [], []
    for ch, off in zip(crop, offsets, strict=True):
        x = _forward(ch, off, use_anscombe)
        sigma = float(estimate_sigma(x))
        if method == "nl-means":
            grid = {"patch_size": [_NL_PATCH], "patch_distance": [_NL_DISTANCE],
                    "sigma": [sigma], "h": [f * sigma for f in _NL_H_FACTORS] or [1.0]}
        else:
            grid = {"sigma": list(_GAUSS_SIGMAS)}
        if sigma == 0.0:  # a constant channel: nothing to denoise
            params.append({k: v[0] for k, v in grid.items()} | {"h": 0.0} * (method == "nl-means"))
            losses.append([])
            continue
        _, (tested, loss) = calibrate_denoiser(
            x, lambda im, **kw: _filter(im, method, kw), grid, extra_output=True)
        best = int(np.argmin(loss))
        params.append({k: float(v) for k, v in tested[best].items()})
        losses.append([float(v) for v in loss])
    record = {
        "method": method,
        "criterion": "J-invariant self-supervised loss (skimage.restoration.calibrate_denoiser)",
        "anscombe": use_anscombe,
        "offsets": list(offsets),
        "channels": params,
        "losses": losses,
        "crop_px": [int(crop.shape[1]), int(crop.shape[2])],
    }
    log.info("denoise: %s %s", method, params)
    return DenoiseParams(method, use_anscombe, tuple(float(o) for o in offsets),
                         tuple(params), record)


def _chunk_fn(block: np.ndarray, params: DenoiseParams) -> np.ndarray:
    out = np.empty(block.shape, dtype=np.float32)
    for idx in np.ndindex(*block.shape[:-2]):
        c = idx[-1]
        x = _forward(block[idx], params.offsets[c], params.anscombe)
        y = _filter(x, params.method, params.channel_params[c])
        out[idx] = _inverse(y, params.offsets[c], params.anscombe)
    return out


def denoise_planes(
    planes: da.Array, params: DenoiseParams, *,
    progress: Callable[[dict], None] | None = None,
) -> da.Array:
    """Denoise a ``(P, C, Y, X)`` stack lazily, chunk by chunk with the filter's overlap.

    Chunks along P and C must be 1 (each plane and channel is filtered on its own); the
    returned array is float32 with the chunks of ``planes``. ``method="none"`` returns the
    input as float32.
    """
    planes = planes.rechunk((1, 1) + planes.chunks[2:])
    if params.method == "none":
        return planes.astype(np.float32)
    depth = {0: 0, 1: 0, 2: params.depth_px, 3: params.depth_px}
    if progress is not None:
        progress({"stage": "denoise", "chunks": int(np.prod(planes.numblocks))})
    return planes.map_overlap(_chunk_fn, depth=depth, boundary="reflect",
                              dtype=np.float32, params=params)
