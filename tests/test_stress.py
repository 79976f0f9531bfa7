"""The stress suite's generator (pipeline.simulate.stress): independent of the inverse model,
correlated STORM noise, a dark background around nuclei, calibration errors, seed protocol."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import fft as sfft
from scipy import ndimage

from pipeline.simulate import g, g_prime, g_second
from pipeline.simulate.stress import (
    RETIRED_TEST_SEEDS,
    STRESS_SPECS,
    TEST_SEEDS,
    TUNING_SEEDS,
    StressSpec,
    make_stress_case,
)

SIMULATE_DIR = Path(__file__).resolve().parents[1] / "pipeline" / "simulate"
INVERSE_MODEL = ("pipeline.physics", "pipeline.estimate", "pipeline.mollifier", "pipeline.tiling",
                 "pipeline.process")


def _small(**kw) -> StressSpec:
    base = {"name": "t", "kind": "smooth", "channels": 1, "pixel_size_um": 0.02, "size_px": 128,
            "lam_scale_um": 0.8}
    return StressSpec(**(base | kw))


# ---------------------------------------------------------------- independence


def _imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ["pipeline", "simulate"]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return out


def test_generator_never_imports_the_inverse_model() -> None:
    files = sorted(SIMULATE_DIR.glob("*.py"))
    assert len(files) >= 8
    bad = {p.name: m for p in files for m in _imports(p) if m.startswith(INVERSE_MODEL)}
    assert bad == {}, f"pipeline.simulate imports the inverse model: {bad}"
    # and at run time, nothing of it gets loaded on the way
    code = ("import sys, pipeline.simulate, pipeline.simulate.stress, "
            "pipeline.simulate.stress_files; "
            f"print(sorted(m for m in sys.modules if m.startswith({INVERSE_MODEL!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_generator_nonlinearity_matches_the_inverse_model() -> None:
    """Two independent codings of g, g', g'' (the cross-check lives here, never in the
    generator)."""
    from pipeline.physics import chromatin

    phi = np.linspace(-0.2, 0.9, 111)
    for ours, theirs in ((g, chromatin.g), (g_prime, chromatin.g_prime),
                         (g_second, chromatin.g_second)):
        np.testing.assert_allclose(ours(phi, 0.7), theirs(phi, 0.7), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours(phi, 0.55), theirs(phi, 0.55), rtol=1e-12, atol=1e-14)


def _spectral_maps(stack: np.ndarray, px: float) -> dict[str, np.ndarray]:
    """Exact periodic derivative maps of (C, Y, X) in the inverse model's layout."""
    ny, nx = stack.shape[-2:]
    ky = 2 * np.pi * sfft.fftfreq(ny, d=px)[:, None]
    kx = 2 * np.pi * sfft.fftfreq(nx, d=px)[None, :]
    f = sfft.fft2(stack)
    k2 = ky**2 + kx**2

    def back(mult):
        return sfft.ifft2(mult * f).real

    return {"u": stack, "x": back(1j * kx), "y": back(1j * ky), "lap": back(-k2),
            "bilap": back(k2**2)}


@pytest.mark.parametrize("channels", [1, 2])
def test_steady_state_satisfies_the_inverse_models_residual(channels: int) -> None:
    """The generator's solution is a zero of the physics module's R = A lam - B."""
    from pipeline.physics.chromatin import ChromatinModel
    from pipeline.physics.chromatin import g as g_physics

    case = make_stress_case(_small(kind="lognormal", channels=channels, pixel_size_um=0.03,
                                   size_px=96), seed=3)
    model, px = ChromatinModel(), case.pixel_size_um
    fields = np.stack([case.phi_h, case.phi_w, g_physics(case.phi_h, model.phi_max)])
    a, b = model.linear_terms(_spectral_maps(fields, px))
    r = a * case.lam - b
    scale = np.abs(b).max()
    assert np.abs(r).max() < 1e-5 * scale
    # teeth: a λ 10 % off, or the start of the solver, is far from a zero
    assert np.abs(a * case.lam * 1.1 - b).max() > 1e-2 * scale
    pe0 = (1 - case.phi_w) / (1 + case.lam)  # local equilibrium φ_h / φ_e = λ
    eq = np.stack([1 - case.phi_w - pe0, case.phi_w, g_physics(1 - case.phi_w - pe0, 0.7)])
    a0, b0 = model.linear_terms(_spectral_maps(eq, px))
    assert np.abs(a0 * case.lam - b0).max() > 1e-2 * scale


# ---------------------------------------------------------------- rendering


def _lag1(noise: np.ndarray) -> float:
    n = noise - noise.mean()
    return float((np.mean(n[:, 1:] * n[:, :-1]) + np.mean(n[1:] * n[:-1])) / (2 * n.var()))


def test_storm_noise_is_spatially_correlated_camera_noise_is_not() -> None:
    px = 0.02
    storm = make_stress_case(_small(rendering="storm", locs_per_px=20, precision_nm=25), seed=5)
    cam = make_stress_case(_small(psf_sigma_px=1.0), seed=5)
    out = {}
    for case, blur_px in ((storm, np.sqrt(2 * (0.025 / px) ** 2 + 1 / 12)), (cam, 1.0)):
        cal = case.calibration[0]
        field = (case.image[0].astype(float) - cal.offset) * cal.scale
        clean = ndimage.gaussian_filter(case.phi_h, blur_px, mode="wrap")
        noise = field - clean
        assert abs(noise.mean()) < 0.1 * noise.std()  # the true calibration is exact
        out[case.params["rendering"]] = _lag1(noise)
    # Gaussian rendering at 1.25 px of pixel-independent counts: exp(-1/(4 * 1.25²)) = 0.85
    assert out["storm"] > 0.6
    assert abs(out["camera"]) < 0.05


def test_blinking_molecules_overdisperse_the_storm_noise() -> None:
    """k localisations per molecule keep the mean and raise the variance (compound Poisson:
    variance factor (k - 1 + k²) / k = 4.75 for k = 4; about 4.4 measured at a precision of
    0.05 px, as a few clusters straddle pixel edges)."""
    from pipeline.simulate import render_storm

    flat = np.full((1, 128, 128), 0.5)
    out = {}
    for k in (1.0, 4.0):
        img, cal = render_storm(flat, pixel_size_um=0.02, locs_per_px=20, precision_um=0.001,
                                locs_per_molecule=k, rng=7)
        field = (img[0].astype(float) - cal[0].offset) * cal[0].scale
        assert field.mean() == pytest.approx(0.5, abs=0.01)
        out[k] = field.var()
    assert out[1.0] == pytest.approx(0.5 / 20, rel=0.05)  # Poisson
    assert 3.8 < out[4.0] / out[1.0] < 5.2


def test_nucleus_sits_in_a_dark_background() -> None:
    for rendering in ("camera", "storm"):
        spec = _small(nucleus=True, background=0.03, pixel_size_um=0.05, rendering=rendering,
                      locs_per_px=20)
        case = make_stress_case(spec, seed=2)
        assert 0.15 < case.foreground.mean() < 0.5
        cal = case.calibration[0]
        field = (case.image[0].astype(float) - cal.offset) * cal.scale
        far = ndimage.distance_transform_edt(~case.foreground) * case.pixel_size_um > 0.5
        deep = ndimage.distance_transform_edt(case.foreground) * case.pixel_size_um > 0.5
        assert far.mean() > 0.2 and deep.sum() > 100
        # outside: only background (removed by the true offset) and noise
        assert abs(field[far].mean()) < 0.01
        assert field[deep].mean() > 0.25
        np.testing.assert_allclose(field[deep].mean(), case.phi_h[deep].mean(), atol=0.02)
    # without a nucleus the fields fill the image
    assert make_stress_case(_small(), seed=2).foreground.all()


def test_calibration_error_is_applied() -> None:
    case = make_stress_case(_small(channels=2, calibration_error=(0.1, -0.1)), seed=1)
    assert case.channel_names == ("chromatin", "heterochromatin")
    for true, given, err in zip(case.calibration, case.calibration_given, (0.1, -0.1), strict=True):
        assert given.offset == true.offset
        assert given.scale == pytest.approx(true.scale * (1 + err), rel=1e-12)
    exact = make_stress_case(_small(channels=2), seed=1)
    assert exact.calibration_given == exact.calibration
    # a scalar error applies to every channel; a dict spec is read with the same rules
    d = make_stress_case({"name": "t", "kind": "step", "channels": 2, "pixel_size_um": 0.03,
                          "size_px": 64, "lam_scale_um": 0.5, "calibration_error": -0.1}, seed=1)
    assert [g.scale / t.scale for g, t in zip(d.calibration_given, d.calibration, strict=True)] \
        == pytest.approx([0.9, 0.9])
    with pytest.raises(ValueError, match="unknown stress spec key"):
        make_stress_case({"name": "t", "kind": "step", "channels": 1, "pixel_size_um": 0.03,
                          "size_px": 64, "lam_scale_um": 0.5, "photon": 3}, seed=1)
    with pytest.raises(ValueError, match="calibration_error"):
        _small(calibration_error=(0.1, 0.1, 0.1))


def test_cases_are_reproducible_and_seeds_draw_new_cases() -> None:
    a, b = make_stress_case(_small(), 4), make_stress_case(_small(), 4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.lam, b.lam)
    assert not np.array_equal(make_stress_case(_small(), 5).lam, a.lam)
    assert a.name == "t_s4" and a.params["seed"] == 4 and a.params["solver_residual_max"] < 1e-6


def test_noise_draws_keep_the_truth_and_redraw_the_noise() -> None:
    """``noise_draw`` (benchmarks/noise_replicates.py): the same λ, fields and nucleus, other
    photons; draw 0 is the case itself."""
    a = make_stress_case(_small(), 4)
    np.testing.assert_array_equal(make_stress_case(_small(), 4, noise_draw=0).image, a.image)
    b = make_stress_case(_small(), 4, noise_draw=1)
    np.testing.assert_array_equal(b.lam, a.lam)
    np.testing.assert_array_equal(b.phi_h, a.phi_h)
    assert not np.array_equal(b.image, a.image) and b.name == "t_s4_n1"
    c = make_stress_case(_small(), 4, noise_draw=2)
    assert not np.array_equal(c.image, b.image)


@pytest.mark.parametrize("metadata", ["ome", "imagej"])
def test_stress_folder_round_trip_through_the_product_reader(tmp_path, metadata: str) -> None:
    """Written cases open in the product's TIFF reader with their pixel size and channels, and
    the manifest's --calibration is the given (erroneous) calibration."""
    from pipeline.config_parse import parse_calibration
    from pipeline.io import inspect_tiff, read_planes
    from pipeline.simulate.stress_files import load_stress_truth, write_stress_folder

    spec = _small(channels=2, size_px=64, pixel_size_um=0.031, calibration_error=(0.1, -0.1))
    manifest = write_stress_folder(tmp_path, seeds=(1,), specs=(spec,), metadata=metadata)
    (entry,) = manifest["cases"]
    info = inspect_tiff(tmp_path / entry["image"])
    assert info.n_channels == 2 and info.pixel_size_um == pytest.approx(0.031, rel=1e-6)
    case = make_stress_case(spec, 1)
    planes = np.asarray(read_planes(tmp_path / entry["image"], info))
    np.testing.assert_array_equal(planes.reshape(case.image.shape), case.image)
    truth = load_stress_truth(tmp_path / entry["truth"])
    np.testing.assert_array_equal(truth["lam"], case.lam)
    assert truth["calibration_given"] == case.calibration_given != case.calibration
    assert parse_calibration(entry["calibration_arg"]) == case.calibration_given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "truth"]


# ---------------------------------------------------------------- suite and seeds


def test_tuning_and_test_seeds_are_disjoint() -> None:
    assert set(TUNING_SEEDS).isdisjoint(TEST_SEEDS)
    assert 37 in TUNING_SEEDS  # looked at before: tuning data for good
    assert len(TEST_SEEDS) >= 2 and len(set(TEST_SEEDS)) == len(TEST_SEEDS)
    # a test seed that was looked at is never held out again
    assert set(RETIRED_TEST_SEEDS).isdisjoint(TEST_SEEDS)
    assert {101, 202, 303, 854, 3356, 9010} <= set(RETIRED_TEST_SEEDS)


def test_stress_specs_cover_the_grid() -> None:
    specs = STRESS_SPECS
    assert 16 <= len(specs) <= 24 and len({s.name for s in specs}) == len(specs)
    px = [s.pixel_size_um for s in specs]
    assert min(px) <= 0.015 and max(px) >= 0.06
    cam = [s for s in specs if s.rendering == "camera"]
    storm = [s for s in specs if s.rendering == "storm"]
    assert min(s.psf_sigma_px for s in cam) == 0 and max(s.psf_sigma_px for s in cam) >= 1.5
    assert len({s.photons for s in cam}) >= 3 and len({s.read_noise for s in cam}) >= 3
    assert min(s.locs_per_px for s in storm) <= 2 and max(s.locs_per_px for s in storm) >= 50
    prec = [s.precision_nm for s in storm]
    assert min(prec) <= 10 and max(prec) >= 25
    ell = [s.lam_scale_um for s in specs]
    assert min(ell) <= 0.6 and max(ell) >= 2.6
    assert {s.kind for s in specs} == {"smooth", "lognormal", "step"}
    assert {s.channels for s in specs} == {1, 2}
    assert {s.rendering for s in specs if s.nucleus} == {"camera", "storm"}
    errs = {e for s in specs for e in s.calibration_error}
    assert {0.1, -0.1, 0.0} <= errs
    assert all(128 <= s.size_px <= 256 for s in specs)
    assert sum(s.noise == "moderate" for s in specs) >= 6
    # every case leaves evaluation pixels 1 µm inside the border, and 1 µm inside the nucleus
    # (semi-minor axis >= 0.3 * 0.7 of the side)
    assert all(s.size_px * s.pixel_size_um >= 3.5 for s in specs)
    assert all(0.21 * s.size_px * s.pixel_size_um >= 1.5 for s in specs if s.nucleus)
