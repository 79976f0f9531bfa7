"""Calibrated denoising: J-invariant parameter choice, Anscombe, chunked == whole plane."""

import dask.array as da
import numpy as np
import pytest

from pipeline.denoise import calibrate, denoise_planes, depth_px


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    clean = 100 + 60 * (1 + np.sin(xx / 6.0) * np.cos(yy / 9.0))
    return clean, rng.poisson(clean).astype(np.uint16)[None, None]  # (P, C, Y, X) photon counts


@pytest.mark.parametrize("method", ["nl-means", "gaussian"])
def test_chunked_equals_whole_plane(counts, method):
    _, img = counts
    params = calibrate(img[0], method=method, offsets=(100.0,), crop_px=64)
    whole = denoise_planes(da.from_array(img, chunks=img.shape), params).compute()
    chunked = denoise_planes(da.from_array(img, chunks=(1, 1, 32, 40)), params).compute()
    assert params.depth_px == depth_px(method, params.channel_params[0]) > 0
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-3)


def test_denoising_reduces_error_and_records_choice(counts):
    clean, img = counts
    params = calibrate(img[0], method="nl-means", offsets=(100.0,), crop_px=64)
    assert params.anscombe  # integer data: photon counts
    assert params.record["criterion"].startswith("J-invariant")
    assert len(params.record["losses"][0]) > 1
    out = denoise_planes(da.from_array(img), params).compute()[0, 0]
    err_raw = np.sqrt(np.mean((img[0, 0] - clean) ** 2))
    err_out = np.sqrt(np.mean((out - clean) ** 2))
    assert err_out < 0.7 * err_raw


def test_none_passes_through(counts):
    _, img = counts
    params = calibrate(img[0], method="none")
    out = denoise_planes(da.from_array(img), params).compute()
    assert out.dtype == np.float32 and params.depth_px == 0
    np.testing.assert_array_equal(out, img.astype(np.float32))
