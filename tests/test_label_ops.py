"""Bounded-memory distances and label operations give exactly what scipy and scikit-image
give (``pipeline.distance``, ``pipeline.label_ops``), on random masks and in small blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

from pipeline import distance
from pipeline.label_ops import drop_small, label_components, watershed_by_object


def _masks(seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(2, 160, 2))
        noise = rng.random((h, w))
        if i % 3 == 0:
            yield noise > 0.15  # many tiny holes: ties everywhere
        else:
            yield ndi.gaussian_filter(noise, rng.uniform(0.7, 4)) > rng.uniform(0.45, 0.55)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(distance, "BLOCK_PX", 257)  # several blocks, a row split across none


def test_distances_equal_scipy(small_blocks) -> None:
    for m in _masks(0):
        ref = ndi.distance_transform_edt(m)
        assert np.array_equal(distance.distance_to_background(m, np.float64), ref)
        assert np.array_equal(distance.distance_to_background(m, np.float32),
                              ref.astype(np.float32))
        sq = distance.squared_distance_to_background(m)
        assert sq.dtype == np.int32 and np.array_equal(sq, np.round(ref**2))
        for px in (0.02, 0.037, 0.1):
            ref_px = ndi.distance_transform_edt(m, sampling=px)
            got = distance.distance_to_background(m, np.float64, sampling=px, outside=np.nan)
            assert np.array_equal(got, np.where(m, ref_px, np.nan), equal_nan=True)


def test_labels_and_small_objects_equal_skimage() -> None:
    for m in _masks(1):
        lab = label_components(m)
        assert lab.dtype == np.int32 and np.array_equal(lab, label(m))
        for min_px in (2, 7, 40):
            ref = label(remove_small_objects(label(m), max_size=min_px - 1) > 0)
            assert np.array_equal(drop_small(lab, min_px), ref)


def test_watershed_by_object_equals_the_whole_plane_watershed() -> None:
    rng = np.random.default_rng(2)
    for m in _masks(3):
        comp = label_components(m)
        image = -ndi.distance_transform_edt(m).astype(np.float32)
        markers = np.zeros(m.shape, np.int32)
        idx = np.flatnonzero(m)
        if idx.size == 0:
            continue
        seeds = rng.choice(idx, size=min(idx.size, int(rng.integers(1, 12))), replace=False)
        markers.flat[seeds] = np.arange(1, seeds.size + 1)
        ref = watershed(image, markers, mask=m)
        assert np.array_equal(watershed_by_object(image, markers, comp), ref)
