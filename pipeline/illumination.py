"""Reference frames: the dark level from a dark frame (``--dark-frame``), and uneven
illumination, a flat field read, smoothed and divided out (``--flat-field``).

A flat field is an image of a uniform fluorescent sample under the same illumination. Its
smoothed, mean-one profile above its dark level (the *gain*) divides each channel of a plane
as ``dark + (intensity - dark) / gain``, so the dark level stays where it was and everything
that reads intensities afterwards sees an evenly lit image. Which dark levels apply is the
calibration's decision (:func:`pipeline.calibration.illumination_corrected`); this module
only reads, checks, smooths and divides. A reference frame recorded with all of a file's
channels is read on the channels read (:class:`~pipeline.channels.ChannelsRead`). ``docs/your-own-images.md`` ("Uneven illumination")
has the measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.channels import ChannelsRead
from pipeline.defect_pixels import defect_pixels_replaced

__all__ = ["FLAT_MIN_GAIN", "FLAT_SMOOTH_PX", "check_flat_field_size", "dark_frame_offsets",
           "divide_illumination", "flat_field_gain", "read_flat_field", "read_reference_tiff"]

FLAT_SMOOTH_PX = 4.0
"""Gaussian σ (pixels) that smooths a flat field before it divides the image. Illumination
varies over tens of micrometres; the smoothing removes the flat's own photon noise (a flat of
3000 photons per pixel has 1.8 % pixel noise, 0.13 % after it) at a scale far below the
mollifier's radius (10-18 px), so no structure the fit sees is taken from or added to the
image."""
FLAT_MIN_GAIN = 0.1
"""A flat field that falls below this fraction of its mean anywhere (after its dark level) is
refused: dividing by it would multiply the image's noise tenfold there."""


def read_reference_tiff(path: Path, what: str, dtype: Any, hint: str,
                        read: ChannelsRead | None = None) -> np.ndarray:
    """A dark frame's or flat field's pixels in ``dtype``, on the channels ``read`` when it
    holds all the file's channels (:meth:`~pipeline.channels.ChannelsRead.select`);
    ``ValueError`` naming the file (``what`` and ``path``) when it is no TIFF (with ``hint``)
    or holds non-finite values."""
    import tifffile

    try:
        arr = np.asarray(tifffile.imread(path), dtype=dtype)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"{what} {path}: cannot be read as a TIFF ({exc}); {hint}") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} {path}: holds non-finite values")
    return arr if read is None else read.select(arr)


def dark_frame_offsets(path: str | Path, n_channels: int, read: ChannelsRead | None = None
                       ) -> list[float]:
    """Per-channel dark level from a dark-frame TIFF: the median of each channel.

    The frame may be (Y, X) (one level for every channel), (C, Y, X), a stack whose first
    axis holds frames (one channel; the median over all), or (N, C, Y, X); with ``read``
    (some of the file's channels read), ``C`` may also be the file's channel count. Raises
    ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    arr = read_reference_tiff(path, "dark frame", np.float64, "pass a TIFF recorded with the "
                               "shutter closed, or leave out --dark-frame", read)
    if arr.ndim == 2:
        return [float(np.median(arr))] * n_channels
    if arr.ndim in (3, 4) and arr.shape[-3] == n_channels:
        return [float(np.median(arr[..., k, :, :])) for k in range(n_channels)]
    if arr.ndim == 3 and n_channels == 1:
        return [float(np.median(arr))]
    also = f" (or all {read.of} of the file's)" if read is not None else ""
    raise ValueError(f"dark frame {path}: shape {arr.shape} does not match an image with "
                     f"{n_channels} channel(s) read; pass a (Y, X) frame or one with "
                     f"{n_channels} channel(s){also} first")


def read_flat_field(path: str | Path, n_channels: int, shape_yx: tuple[int, int],
                    read: ChannelsRead | None = None) -> np.ndarray:
    """A flat-field TIFF as ``(C, Y, X)`` float32, frames averaged.

    Accepted: ``(Y, X)`` (one illumination for every channel), ``(C, Y, X)`` with the image's
    channel count, a stack of frames ``(N, Y, X)`` (one channel), or ``(N, C, Y, X)``; with
    ``read`` (some of the file's channels read), ``C`` may also be the file's channel count.
    The ``(Y, X)`` size must be the image's. Raises ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    arr = read_reference_tiff(path, "flat field", np.float32, "pass an image of a uniform "
                              "fluorescent sample, or leave out --flat-field", read)
    if arr.ndim == 4 and arr.shape[1] == n_channels:
        arr = arr.mean(axis=0)
    elif arr.ndim == 3 and n_channels == 1:
        arr = arr.mean(axis=0, keepdims=True)
    elif arr.ndim == 2:
        arr = np.broadcast_to(arr, (n_channels, *arr.shape))
    elif not (arr.ndim == 3 and arr.shape[0] == n_channels):
        also = f" (or all {read.of} of the file's)" if read is not None else ""
        raise ValueError(f"flat field {path}: shape {arr.shape} does not match an image with "
                         f"{n_channels} channel(s) read; pass a (Y, X) flat or one with "
                         f"{n_channels} channel(s){also} first (frames before channels)")
    _check_flat_size(path, arr.shape, shape_yx)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_flat_size(path: Path, shape: tuple[int, ...], shape_yx: tuple[int, int]) -> None:
    if tuple(shape[-2:]) != tuple(shape_yx):
        raise ValueError(f"flat field {path}: {shape[-2]} x {shape[-1]} pixels, the image "
                         f"{shape_yx[0]} x {shape_yx[1]}; record the flat field with the "
                         "image's camera region and binning")


def check_flat_field_size(path: str | Path, shape_yx: tuple[int, int]) -> None:
    """Refuse (``ValueError`` naming the file) a flat field whose ``(Y, X)`` size is not the
    image's, from its header alone: the run checks it when it inspects each image, before any
    work. A file that is no TIFF passes here and is refused when it is read."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return
    _check_flat_size(path, shape, shape_yx)


def flat_field_gain(flat: np.ndarray, dark_levels: Sequence[float], *,
                    path: str | Path = "flat field") -> np.ndarray:
    """Relative illumination ``(C, Y, X)``, mean 1 per channel: the flat above its dark level,
    smoothed (Gaussian of :data:`FLAT_SMOOTH_PX`). Raises ``ValueError`` (naming ``path``)
    where it falls below :data:`FLAT_MIN_GAIN` of its mean. The flat's single hot or dead
    pixels (:mod:`pipeline.defect_pixels`) take their neighbours' median first: they are the
    camera's, not the illumination's."""
    from scipy.ndimage import gaussian_filter

    gain = np.empty(flat.shape, np.float32)
    for k, (ch, dark) in enumerate(zip(flat, dark_levels, strict=True)):
        ch = defect_pixels_replaced(np.asarray(ch)[None])[0][0]
        g = gaussian_filter(np.asarray(ch, np.float64) - dark, FLAT_SMOOTH_PX, mode="nearest")
        mean = float(g.mean())
        if not mean > 0 or not g.min() >= FLAT_MIN_GAIN * mean:
            raise ValueError(
                f"flat field {path}: channel {k} falls to {g.min() / mean if mean > 0 else 0:.2g} "
                f"of its mean above the dark level ({dark:g}); a flat field is an image of a "
                "uniform fluorescent sample, bright everywhere in the field")
        gain[k] = g / mean
    return gain


_GAIN_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def _gain(path: Path, shape: tuple[int, ...], dark_levels: Sequence[float],
          read: ChannelsRead | None = None) -> np.ndarray:
    """:func:`flat_field_gain` of the file, read and smoothed once while the file and the dark
    levels stay the same (every plane of a stack, and the calibration check's second
    calibration, use it); one gain is held at a time."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, tuple(shape),
           tuple(float(d) for d in dark_levels), read)
    if key not in _GAIN_CACHE:
        _GAIN_CACHE.clear()
        flat = read_flat_field(path, shape[0], shape[-2:], read)
        _GAIN_CACHE[key] = flat_field_gain(flat, dark_levels, path=path)
    return _GAIN_CACHE[key]


def divide_illumination(plane: np.ndarray, dark_levels: Sequence[float], path: Path,
                        flat_dark_levels: Sequence[float], read: ChannelsRead | None = None
                        ) -> tuple[np.ndarray, dict[str, Any]]:
    """``plane`` ``(C, Y, X)`` with each channel ``dark + (intensity - dark) / gain`` (float32),
    the gain from the flat field at ``path`` (on the channels ``read``) above
    ``flat_dark_levels``, and a record (the file, the gain's range per channel)."""
    gain = _gain(path, plane.shape, flat_dark_levels, read)
    out = np.empty(plane.shape, np.float32)
    for k, (ch, dark) in enumerate(zip(plane, dark_levels, strict=True)):
        x = np.asarray(ch, dtype=np.float64) - dark
        x /= gain[k]
        x += dark
        out[k] = x
    return out, {"path": str(path),
                 "gain_min": [round(float(g.min()), 4) for g in gain],
                 "gain_max": [round(float(g.max()), 4) for g in gain]}
