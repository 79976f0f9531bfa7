"""Tests of the synthetic ground-truth simulator (pipeline.simulate)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
from scipy import fft as sfft

from pipeline.simulate import (
    LAMBDA_KINDS,
    SteadyStateNotConverged,
    g_prime,
    g_second,
    lambda_field,
    load_truth,
    local_equilibrium,
    render_image,
    simulate_case,
    simulate_folder,
    smooth_lambda,
    solve_steady_state,
    steady_state_residual,
    water_field,
    write_case,
)

PX = 0.02
PHI_MAX = 0.7
L_INT = 0.03
SHAPE = (96, 96)


@pytest.fixture(scope="module")
def solved() -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
    """(kind, channels) -> (lam, phi_w, phi_d, info) on a 96² grid."""
    out = {}
    phi_w2 = water_field(SHAPE, pixel_size_um=PX, rng=1)
    for kind in LAMBDA_KINDS:
        lam = lambda_field(kind, SHAPE, pixel_size_um=PX, rng=0)
        for channels, phi_w in ((1, np.full(SHAPE, 1 - PHI_MAX)), (2, phi_w2)):
            phi_d, info = solve_steady_state(lam, phi_w, pixel_size_um=PX)
            out[kind, channels] = (lam, phi_w, phi_d, info)
    return out


# ---------------------------------------------------------------- input fields


@pytest.mark.parametrize("kind", LAMBDA_KINDS)
def test_lambda_fields_range_and_periodic(kind: str) -> None:
    lam = lambda_field(kind, (128, 128), pixel_size_um=PX, rng=3)
    assert lam.shape == (128, 128)
    assert 0.3 <= lam.min() < lam.max() <= 3.0
    assert 0.5 < np.median(lam) < 2.0
    # periodic: the jump across the wrap is no larger than the largest jump inside
    for axis in (0, 1):
        inner = np.abs(np.diff(lam, axis=axis)).max()
        wrap = np.abs(np.take(lam, 0, axis=axis) - np.take(lam, -1, axis=axis)).max()
        assert wrap <= inner * 1.01 + 1e-12


def test_lambda_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown lambda kind 'waves'"):
        lambda_field("waves", (32, 32), rng=0)  # type: ignore[arg-type]


def test_smooth_lambda_wavelengths() -> None:
    lam = smooth_lambda((128, 128), pixel_size_um=PX, rng=0, contrast=0.05, wavelength_um=(0.6, 1.5))
    spec = np.abs(sfft.rfft2(np.log(lam) - np.log(lam).mean()))
    ky = np.abs(sfft.fftfreq(128, d=PX))[:, None]
    kx = sfft.rfftfreq(128, d=PX)[None, :]
    wl = 1 / np.hypot(ky, kx).clip(1e-12)
    power_in_band = (spec**2)[(wl >= 0.6 * 0.99) & (wl <= 1.5 * 1.01)].sum()
    assert power_in_band > 0.95 * (spec**2).sum()


def test_water_field_area_and_range() -> None:
    phi_w = water_field((128, 128), pixel_size_um=PX, rng=0)
    # the floor is 1 - phi_max; the 2-pixel smoothing of 0.1 µm domains leaves tails between them
    assert phi_w.min() == pytest.approx(1 - PHI_MAX, abs=0.01)
    assert np.median(phi_w) < 0.55
    assert 0.7 < phi_w.max() <= 0.8
    assert np.mean(phi_w > (0.3 + 0.8) / 2) == pytest.approx(0.3, abs=0.01)


# ---------------------------------------------------------------- solver


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kind", LAMBDA_KINDS)
def test_steady_state_converged(solved, kind: str, channels: int) -> None:
    lam, phi_w, phi_d, info = solved[kind, channels]
    assert info["converged"] and info["residual_max"] < 1e-6
    assert 0 < info["steps"] < 2000
    r = steady_state_residual(phi_d, lam, phi_w, pixel_size_um=PX)
    assert np.abs(r).max() < 1e-6
    # the start (local reaction equilibrium) was far from it: the test has teeth
    r0 = steady_state_residual(local_equilibrium(lam, phi_w), lam, phi_w, pixel_size_um=PX)
    assert np.abs(r0).max() > 1e-2


def _spectral(f: np.ndarray, op: str) -> np.ndarray:
    """Spectral derivatives on the full FFT grid, Nyquist zeroed for first derivatives."""
    ny, nx = f.shape
    ky = 2 * np.pi * sfft.fftfreq(ny, d=PX)[:, None]
    kx = 2 * np.pi * sfft.fftfreq(nx, d=PX)[None, :]
    F = sfft.fft2(f)
    if op == "x":
        return sfft.ifft2(1j * np.where(np.abs(kx) == np.abs(kx).max(), 0, kx) * F).real
    if op == "y":
        return sfft.ifft2(1j * np.where(np.abs(ky) == np.abs(ky).max(), 0, ky) * F).real
    k2 = ky**2 + kx**2
    return sfft.ifft2((-k2 if op == "lap" else k2**2) * F).real


def _expanded_residual(lam, phi_w, phi_d, *, sign_mu: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """R from the expanded ∇²μ_d of docs/science.md §1 (chain rule), and the reaction term alone."""
    c = 1 - phi_w
    ph, pe = (c + phi_d) / 2, (c - phi_d) / 2
    grad2 = _spectral(ph, "x") ** 2 + _spectral(ph, "y") ** 2
    lap_mu = (
        -_spectral(pe, "lap")
        + g_prime(ph, PHI_MAX) * _spectral(ph, "lap")
        + g_second(ph, PHI_MAX) * grad2
        - L_INT**2 * _spectral(phi_d, "bih")
    )
    reaction = 2 * (lam * pe - ph)
    return sign_mu * lap_mu + reaction, reaction


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kind", ["smooth", "step"])
def test_residual_by_expanded_formula(solved, kind: str, channels: int) -> None:
    """The chain-rule form of ∇²μ_d agrees with spectral ∇² of μ_d at the solution."""
    lam, phi_w, phi_d, _ = solved[kind, channels]
    r, reaction = _expanded_residual(lam, phi_w, phi_d)
    scale = np.abs(reaction).max()
    # exact up to aliasing: ~1e-6 for one channel, ~1e-3 of the reaction for the water domains
    assert np.abs(r).max() < (1e-5 if channels == 1 else 1e-2 * scale)
    wrong, _ = _expanded_residual(lam, phi_w, phi_d, sign_mu=-1.0)
    assert np.abs(wrong).max() > 0.2 * scale


def test_residual_by_finite_differences(solved) -> None:
    """Second-order finite differences of μ_d itself (no FFT) agree to O(h²)."""
    lam, phi_w, phi_d, _ = solved["smooth", 1]

    def lap(f):
        return (
            np.roll(f, 1, 0) + np.roll(f, -1, 0) + np.roll(f, 1, 1) + np.roll(f, -1, 1) - 4 * f
        ) / PX**2

    c = 1 - phi_w
    ph, pe = (c + phi_d) / 2, (c - phi_d) / 2
    mu = -pe + ph * (PHI_MAX - ph) * (PHI_MAX - 2 * ph) - L_INT**2 * lap(phi_d)
    reaction = 2 * (lam * pe - ph)
    r = lap(mu) + reaction
    assert np.sqrt(np.mean(r**2)) < 0.02 * np.sqrt(np.mean(reaction**2))
    assert np.sqrt(np.mean((-lap(mu) + reaction) ** 2)) > 0.5 * np.sqrt(np.mean(reaction**2))


def test_linear_response_of_one_mode() -> None:
    """λ = 1 + ε cos(kx): φ_d = ε c cos(kx) / (D k² + l² k⁴ + 2), D = ½(1 + g'(c/2))."""
    shape, eps, c = (16, 64), 1e-3, 1 - 0.3
    x = np.arange(shape[1]) * PX
    k = 2 * np.pi / (shape[1] * PX)
    lam = np.broadcast_to(1 + eps * np.cos(k * x), shape)
    phi_d, _ = solve_steady_state(lam, 0.3, pixel_size_um=PX, tol=1e-12)
    amp = 2 * np.abs(np.fft.rfft(phi_d[0])[1]) / shape[1]
    d_eff = 0.5 * (1 + g_prime(c / 2, PHI_MAX))
    expected = eps * c / (d_eff * k**2 + L_INT**2 * k**4 + 2)
    assert amp == pytest.approx(expected, rel=1e-3)
    # the reaction-diffusion length (~0.4 µm) attenuates this 1.28 µm mode ~5× vs equilibrium
    assert amp < 0.5 * eps * c / 2


def test_local_equilibrium_where_lambda_varies_slowly() -> None:
    """On a 16 µm grid with λ wavelengths ≥ 8 µm, φ_h/φ_e follows λ closely."""
    px = 0.25
    lam = smooth_lambda((64, 64), pixel_size_um=px, rng=0, wavelength_um=(8.0, 16.0), n_modes=3)
    phi_d, _ = solve_steady_state(lam, 0.3, pixel_size_um=px)
    ratio = (0.7 + phi_d) / (0.7 - phi_d)
    log_err = np.log(ratio) - np.log(lam)
    assert np.corrcoef(np.log(ratio).ravel(), np.log(lam).ravel())[0, 1] > 0.99
    assert abs(log_err.mean()) < 0.03 and np.abs(log_err).max() < 0.25


@pytest.mark.parametrize("channels", [1, 2])
def test_phi_h_within_bounds(solved, channels: int) -> None:
    for kind in LAMBDA_KINDS:
        _, phi_w, phi_d, _ = solved[kind, channels]
        c = 1 - phi_w
        ph = (c + phi_d) / 2
        if channels == 1:
            assert ph.min() > 0 and ph.max() < c.max()
        else:  # φ_d is smoothed across the small water domains: φ_h dips a little below 0
            assert ph.min() > -0.1 and (ph - c).max() < 0.1
            assert np.mean(ph < 0) < 0.15


def test_not_converged_raises() -> None:
    lam = lambda_field("step", (32, 32), pixel_size_um=PX, rng=0)
    with pytest.raises(SteadyStateNotConverged, match="no steady state after 3 steps"):
        solve_steady_state(lam, 0.3, pixel_size_um=PX, max_steps=3)


def test_bad_lambda_raises() -> None:
    with pytest.raises(ValueError, match="positive"):
        solve_steady_state(np.zeros((16, 16)), 0.3, pixel_size_um=PX)


# ---------------------------------------------------------------- imaging


@pytest.mark.parametrize("noise", [0.01, 0.05])
def test_noise_level_and_exact_calibration(noise: float) -> None:
    rng = np.random.default_rng(0)
    phi_h = np.full((128, 128), PHI_MAX / 2) + 0.1 * rng.standard_normal((128, 128))
    phi_w = np.full((128, 128), 0.3)
    img, cal = render_image(phi_h, phi_w, channels=2, psf_sigma_um=0, noise=noise, rng=1)
    assert img.dtype == np.uint16 and img.shape == (2, 128, 128)
    chrom = (img[0] - cal[0].offset) * cal[0].scale
    het = (img[1] - cal[1].offset) * cal[1].scale
    assert chrom.mean() == pytest.approx(0.7, abs=0.01)
    err = het - phi_h
    mid = np.abs(phi_h - PHI_MAX / 2) < 0.03
    assert abs(err.mean()) < 0.1 * noise
    assert err[mid].std() == pytest.approx(noise, rel=0.3)


def test_simulated_case_fields_recovered(solved) -> None:
    case = simulate_case(kind="lognormal", channels=2, noise=0.02, shape=(64, 64), psf_sigma_um=0)
    fields = case.calibrated()
    assert np.sqrt(np.mean((fields[0] - case.chromatin) ** 2)) < 0.03
    assert np.sqrt(np.mean((fields[1] - case.phi_h) ** 2)) < 0.03
    assert case.solver_info["residual_max"] < 1e-6
    assert case.channel_names == ("chromatin", "heterochromatin")


def test_noiseless_image_is_quantised_truth() -> None:
    case = simulate_case(kind="smooth", channels=1, noise=0, shape=(32, 32), psf_sigma_um=0)
    field = case.calibrated()[0]
    assert np.abs(field - case.phi_h).max() <= 0.5 * case.calibration[0].scale + 1e-12


def test_saturation_raises() -> None:
    with pytest.raises(ValueError, match="saturates uint16"):
        render_image(np.full((16, 16), 0.7), 0.3, noise=0.001, rng=0)


def test_same_seed_same_lambda_for_both_channel_counts() -> None:
    a = simulate_case(kind="step", channels=1, noise=0.02, shape=(32, 32), seed=5)
    b = simulate_case(kind="step", channels=2, noise=0.02, shape=(32, 32), seed=5)
    np.testing.assert_array_equal(a.lam, b.lam)
    assert a.name == "step_1ch_s5" and b.name == "step_2ch_s5"


# ---------------------------------------------------------------- files


def _pixel_size_from_tiff(path) -> tuple[float, float, str]:
    with tifffile.TiffFile(path) as tif:
        if tif.is_ome:
            pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
            return (
                float(pixels.get("PhysicalSizeX")),
                float(pixels.get("PhysicalSizeY")),
                pixels.get("PhysicalSizeXUnit"),
            )
        page = tif.pages[0]
        xres, yres = page.resolution
        return 1 / xres, 1 / yres, tif.imagej_metadata["unit"]


@pytest.mark.parametrize("metadata", ["ome", "imagej"])
@pytest.mark.parametrize("channels", [1, 2])
def test_write_case_round_trip(tmp_path, metadata: str, channels: int) -> None:
    case = simulate_case(
        kind="smooth", channels=channels, noise=0.02, shape=(32, 48), pixel_size_um=0.0317
    )
    img_path, truth_path = write_case(
        case, tmp_path / "img" / "a.tif", tmp_path / "truth" / "a.npz", metadata=metadata
    )
    data = tifffile.imread(img_path)
    assert data.dtype == np.uint16
    assert data.shape == ((32, 48) if channels == 1 else (2, 32, 48))
    np.testing.assert_array_equal(data.reshape(case.image.shape), case.image)
    px, py, unit = _pixel_size_from_tiff(img_path)
    assert px == pytest.approx(0.0317, rel=1e-6) and py == pytest.approx(0.0317, rel=1e-6)
    assert unit in ("µm", "um")
    truth = load_truth(truth_path)
    np.testing.assert_array_equal(truth["lam"], case.lam)
    np.testing.assert_array_equal(truth["phi_d"], case.phi_d)
    assert truth["calibration"] == case.calibration
    assert truth["pixel_size_um"] == 0.0317
    assert truth["parameters"]["kind"] == "smooth" and truth["image_file"] == "a.tif"


def test_simulate_folder_keeps_truth_outside(tmp_path) -> None:
    images = tmp_path / "images"
    paths = simulate_folder(
        images, kinds=("smooth", "step"), channels=(1, 2), shape=(32, 32), seed=2
    )
    assert [p.name for p in paths] == [
        "smooth_1ch_s2.tif",
        "smooth_2ch_s2.tif",
        "step_1ch_s2.tif",
        "step_2ch_s2.tif",
    ]
    assert sorted(p.name for p in images.iterdir()) == sorted(p.name for p in paths)
    truth = tmp_path / "images_truth"
    assert sorted(p.name for p in truth.glob("*.npz")) == [p.stem + ".npz" for p in paths]
    manifest = json.loads((truth / "manifest.json").read_text())
    assert len(manifest["cases"]) == 4 and (truth / "README.md").exists()
    assert (truth / manifest["cases"][0]["image"]).resolve() == paths[0].resolve()
    with pytest.raises(ValueError, match="inside the image folder"):
        simulate_folder(images, truth_dir=images / "truth", cases=[("smooth", 1)], shape=(32, 32))
