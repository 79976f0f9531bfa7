"""Euclidean distance to the background, in bounded memory.

:func:`scipy.ndimage.distance_transform_edt` returns float64 distances, and on its way builds
the per-axis offsets as a second float64 array of ``ndim`` planes: about 33 bytes a pixel at
its peak in 2-D, 2.2 GB for one 8192² plane. Here scipy computes only the **feature
transform** (the index of each pixel's nearest background pixel, int32), and the distances are
assembled from it a block of rows at a time into an output of the dtype asked for: about 13
bytes a pixel in float32. The values are those of scipy's distances, rounded once to the output
dtype (the squared distances are exact integers).

Examples
--------
>>> m = np.zeros((5, 7), bool); m[1:4, 1:6] = True
>>> distance_to_background(m, np.float64)[2].tolist()
[0.0, 1.0, 2.0, 2.0, 2.0, 1.0, 0.0]
>>> int(squared_distance_to_background(m).max())
4
"""

from __future__ import annotations

import numpy as np

__all__ = ["distance_to_background", "squared_distance_to_background"]

BLOCK_PX = 1 << 22
"""Pixels per block of rows when distances are assembled from the feature transform."""


def _feature_transform(mask: np.ndarray, sampling: float | None = None) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.distance_transform_edt(np.asarray(mask, bool), sampling=sampling,
                                      return_distances=False, return_indices=True)


def _blocks(shape: tuple[int, int]):
    rows = max(1, BLOCK_PX // max(1, shape[1]))
    for r0 in range(0, shape[0], rows):
        yield r0, min(shape[0], r0 + rows)


def _squared(ft: np.ndarray, r0: int, r1: int, sampling: tuple[float, float] | None
             ) -> np.ndarray:
    """Squared distances of rows ``r0:r1`` from the feature transform (int64, or float64
    with ``sampling``)."""
    dy = ft[0, r0:r1].astype(np.int64) - np.arange(r0, r1)[:, None]
    dx = ft[1, r0:r1].astype(np.int64) - np.arange(ft.shape[2])[None, :]
    if sampling is None:
        return dy * dy + dx * dx
    return (dy * sampling[0]) ** 2 + (dx * sampling[1]) ** 2


def squared_distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (px², integers) of each ``mask`` pixel to the nearest
    pixel outside it (0 outside): int32 when every value fits, int64 otherwise."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    dtype = np.int32 if sum(s * s for s in mask.shape) < 2**31 else np.int64
    ft = _feature_transform(mask)
    out = np.empty(mask.shape, dtype)
    for r0, r1 in _blocks(mask.shape):
        out[r0:r1] = _squared(ft, r0, r1, None)
    return out


def distance_to_background(mask: np.ndarray, dtype: type = np.float32, *,
                           sampling: float | None = None, outside: float = 0.0) -> np.ndarray:
    """Euclidean distance of each ``mask`` pixel to the nearest pixel outside it, as
    :func:`scipy.ndimage.distance_transform_edt` computes it (in float64) rounded to ``dtype``.

    ``sampling`` is the pixel size (the distances are then in its unit); pixels outside the
    mask get ``outside`` (0, as scipy gives them, or e.g. NaN).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    ft = _feature_transform(mask, sampling)
    out = np.empty(mask.shape, dtype)
    step = None if sampling is None else (float(sampling), float(sampling))
    for r0, r1 in _blocks(mask.shape):
        d = np.sqrt(_squared(ft, r0, r1, step))
        if outside != 0.0:
            d[~mask[r0:r1]] = outside
        out[r0:r1] = d
    return out
