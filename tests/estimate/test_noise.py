"""The noise model (``pipeline.estimate.noise``): level, spatial correlation and the
clustering term of blinking localisations, on synthetic noise and renderings."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from pipeline.estimate.noise import NoiseModel, estimate_noise_model

PX = 0.02


def _signal(n=256):
    """A smooth chromatin-like field (so that the noise fit must ignore a signal)."""
    y, x = np.mgrid[:n, :n] * PX
    return 0.35 + 0.1 * np.sin(2 * np.pi * x / 1.7) * np.cos(2 * np.pi * y / 2.3)


@pytest.mark.parametrize("seed", [0, 1])
def test_white_noise_model(seed):
    rng = np.random.default_rng(seed)
    m = estimate_noise_model(_signal() + rng.normal(0, 0.03, (256, 256)))
    assert m.corr_length_px < 0.3
    assert m.sigma == pytest.approx(0.03, rel=0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_correlated_noise_model(seed):
    """White noise blurred by a Gaussian of 1 px: length ~1 px, pixel std within 15 %."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.normal(size=(256, 256)), 1.0, mode="wrap")
    noise *= 0.03 / noise.std()
    m = estimate_noise_model(_signal() + noise)
    assert m.corr_length_px == pytest.approx(1.0, abs=0.15)
    assert m.sigma == pytest.approx(0.03, rel=0.15)
    # the wavelet MAD (finest scale) misses most of it: what the old split used
    from skimage.restoration import estimate_sigma
    assert estimate_sigma(_signal() + noise) < 0.5 * 0.03
    # noise drawn from the model has the model's level and correlation
    z = m.sample((256, 256), np.random.default_rng(5))
    assert z.std() == pytest.approx(m.sigma, rel=0.05)
    back = estimate_noise_model(z)
    assert back.corr_length_px == pytest.approx(m.corr_length_px, abs=0.1)


def test_correlation_at_the_bound_is_looked_for_on_binned_pixels():
    """White noise blurred by a Gaussian of 2.5 px has almost no power left above F_LOW: at
    full resolution (``max_bin=1``, the model before it looked on binned pixels) the fit
    stops at its bound C_MAX with half the noise; on 2 x 2-binned pixels it finds the
    correlation, and a level that errs high (by up to a third at 2-5 px: a fit of a spectrum
    this steep), the safe side for the bandwidth choice."""
    rng = np.random.default_rng(0)
    noise = ndi.gaussian_filter(rng.normal(size=(384, 384)), 2.5, mode="wrap")
    noise *= 0.03 / noise.std()
    img = _signal(384) + noise
    full = estimate_noise_model(img, max_bin=1)
    assert full.c == pytest.approx(2.0, abs=0.05) and full.sigma < 0.6 * 0.03
    m = estimate_noise_model(img)
    assert m.c == pytest.approx(2.5, rel=0.1)
    assert 0.9 * 0.03 < m.sigma < 1.4 * 0.03
    assert "binned" in m.method
    mask = np.ones(img.shape, bool)  # a mask is binned with the image
    mask[:, :100] = False
    assert estimate_noise_model(img, mask).c == pytest.approx(2.5, rel=0.1)


@pytest.mark.parametrize(("precision_nm", "locs_per_px"), [(20, 10), (35, 10), (20, 2)])
def test_a_rendering_at_10_nm_pixels(precision_nm, locs_per_px):
    """STORM-like renderings at 10 nm pixels (the stress simulator's renderer), Gaussians of
    2 and 3.5 px: at full resolution the noise looks white and 30-100 times too small (the
    band sees only the rendering's rounding, a std of 0.29-0.41 quantisation steps), so the
    bandwidth choice took it for signal; on binned pixels the correlation length is the
    precision, within 10 %, and the pixel std the rendering's true noise, up to a third high
    at most. The sparse rendering (2 localisations per pixel) is found by its rounding
    floor: its rounding is 0.5 % of its level, above the photon-count floor."""
    from pipeline.physics.observation import to_fields
    from pipeline.simulate.stress import StressSpec, make_stress_case

    case = make_stress_case(StressSpec(
        name="storm_px10", kind="smooth", channels=1, pixel_size_um=0.01, size_px=384,
        lam_scale_um=1.2, rendering="storm", locs_per_px=locs_per_px,
        precision_nm=precision_nm), 11)
    phi_h = to_fields(case.image, case.channel_names, case.calibration, clip=False)[0][0]
    true = case.params["noise_std_heterochromatin"]
    full = estimate_noise_model(phi_h, max_bin=1)
    assert full.is_white and full.sigma < 0.05 * true
    m = estimate_noise_model(phi_h)
    assert m.c == pytest.approx(precision_nm / 10, rel=0.1)
    assert 0.9 * true < m.sigma < 1.4 * true


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_float_rendering_blurred_wider_than_a_pixel(seed):
    """Localisation counts (Poisson, 20 per pixel at full occupancy) rendered with a Gaussian
    of 1.67 px (25 nm precision at 15 nm pixels) and stored as floats: no rounding floor, so
    the band above F_LOW holds the rendering Gaussian's far tail, 25 decades down, which
    the fit without a floor extrapolated to a level 0.73-1.14 times the truth (a second
    draw's). With the spectrum floor (SPECTRUM_RANGE) float32 and float64 read the level
    within 12 %."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:256, :256] * 0.015
    occ = 0.5 + 0.3 * np.sin(2 * np.pi * x / 1.7) * np.cos(2 * np.pi * y / 2.1)
    a, b = (ndi.gaussian_filter(rng.poisson(20 * occ).astype(float), 1.67) for _ in range(2))
    true = ((a - b) / np.sqrt(2))[20:-20, 20:-20].std()
    for img in (a, a.astype(np.float32)):
        m = estimate_noise_model(img[20:-20, 20:-20])
        assert m.sigma == pytest.approx(true, rel=0.12)
        assert m.c == pytest.approx(1.67, rel=0.1)


def test_a_float_rendering_two_pixels_wide_is_measured_on_binned_pixels():
    """Localisations drawn from a two-channel design at 10 nm pixels (20 nm precision: a
    rendering Gaussian of 2 px; EXTRA_SPECS, tuning seed 11), rendered as floats. With the
    spectrum's floor the full-resolution fit sees two or three frequencies above it and puts
    the correlation at 1.88 px with 0.70 of the noise; whether the band holds the correlation
    is decided by the fit without the floor, which puts it at the bound, so the noise is
    measured on binned pixels (1.09 of the truth, the truth from a second draw)."""
    from benchmarks.split_half import draw_table
    from pipeline.simulate.stress import EXTRA_SPECS, make_stress_case

    spec = next(s for s in EXTRA_SPECS if s.name == "storm_smooth_2ch_px10")
    case = make_stress_case(spec, 11)
    px, occ = case.pixel_size_um, case.occupancy[1]
    ny, nx = occ.shape
    renders = []
    for rep in range(2):
        d = draw_table(occ, px, spec.locs_per_px, spec.precision_nm * 1e-3, 1.0, "c",
                       np.random.default_rng(110 + rep)).data
        ix, iy = np.floor(d.x / px).astype(int), np.floor(d.y / px).astype(int)
        on = (ix < nx) & (iy < ny)
        counts = np.bincount(iy[on] * nx + ix[on], minlength=nx * ny).reshape(ny, nx)
        renders.append(ndi.gaussian_filter(counts.astype(float), 2.0, mode="constant")[40:-40, 40:-40])
    true = ((renders[0] - renders[1]) / np.sqrt(2)).std()
    m = estimate_noise_model(renders[0].astype(np.float32))
    assert "binned" in m.method
    assert 0.95 * true < m.sigma < 1.25 * true
    assert m.c == pytest.approx(2.0, rel=0.1)


def test_a_blinking_rendering_two_pixels_wide_keeps_its_clustering_term():
    """Blinking localisations (4 per molecule, 20 per pixel) rendered at 10 nm pixels with a
    precision of 20 nm (2 px; the stress suite's renderer, tuning seed 11): the noise is
    measured on binned pixels, and there the clustering term holds the clusters' noise at the
    scales the window is chosen on (0.02-0.08 cycles/px: 1.45 of the truth, from a second
    noise draw). Without a clustering term on binned pixels (tried, not adopted) it held 0.52
    of it and r fell from 0.93 to 0.81."""
    from dataclasses import replace

    from pipeline.physics.observation import to_fields
    from pipeline.simulate.stress import EXTRA_SPECS, make_stress_case

    base = next(s for s in EXTRA_SPECS if s.name == "storm_smooth_1ch_px10")
    spec = replace(base, name="px10_blink", locs_per_molecule=4.0, locs_per_px=20)
    fields = []
    for draw in (0, 1):
        case = make_stress_case(spec, 11, noise_draw=draw)
        fields.append(to_fields(case.image, case.channel_names, case.calibration_given,
                                clip=False)[0][0])
    noise = (fields[0] - fields[1]) / np.sqrt(2)
    m = estimate_noise_model(fields[0])
    assert "binned" in m.method and m.a2 > 0
    power = np.abs(np.fft.rfft2(noise)) ** 2 / noise.size
    f = np.hypot(np.fft.fftfreq(noise.shape[0])[:, None], np.fft.rfftfreq(noise.shape[1])[None])
    band = (f > 0.02) & (f < 0.08)
    assert m.spectrum(noise.shape)[band].mean() > 0.9 * power[band].mean()


def test_white_noise_is_not_binned():
    """Camera noise far above the floor keeps its full-resolution white model, and so does a
    bright one (0.2 % of the level is 250,000 photons per pixel) and dim photon counts."""
    rng = np.random.default_rng(2)
    for sigma in (0.03, 0.002):
        m = estimate_noise_model(_signal(384) + rng.normal(0, sigma, (384, 384)))
        assert m.is_white and "binned" not in m.method
        assert m.sigma == pytest.approx(sigma, rel=0.1)
    # photon counts, calibrated: at 20 photons per pixel the std is 2.6 counts, far above the
    # rounding floor of one count
    for photons in (20, 900):
        counts = rng.poisson(photons * _signal(384)) / photons
        m = estimate_noise_model(counts.astype(np.float32))
        assert m.is_white and "binned" not in m.method


def test_noise_model_mask_and_errors():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.01, (256, 256))
    img[:, 128:] += rng.normal(0, 0.05, (256, 128))
    mask = np.zeros(img.shape, bool)
    mask[:, 128:] = True
    assert estimate_noise_model(img, mask).sigma == pytest.approx(0.051, rel=0.1)
    with pytest.raises(ValueError, match="does not match"):
        estimate_noise_model(img, mask[:10])
    assert NoiseModel.white(0.0).sample((8, 8), rng).std() == 0


def test_noise_model_of_bright_raw_intensities():
    """Raw counts (not fields) of a sparse two-channel rendering (stress spec
    ``storm_lognormal_2ch_px40``, tuning seed 11): a start above the fit's bounds once raised
    here, so the calibration check could not read the noise."""
    from pipeline.simulate.stress import STRESS_SPECS, make_stress_case

    spec = next(s for s in STRESS_SPECS if s.name == "storm_lognormal_2ch_px40")
    raw = make_stress_case(spec, seed=11).image.astype(float)
    for ch in raw:
        m = estimate_noise_model(ch[:256, :256])
        assert m.sigma > 0 and np.isfinite(m.corr_length_px)


def _localisations(n=256, per_molecule=4.0, precision_px=0.75, seed=0, blinking=True):
    """A uniform field of molecules rendered as localisation microscopy: each molecule gives
    Poisson(``per_molecule``) localisations (blinking; or exactly one), each jittered by the
    precision, histogrammed and Gaussian-rendered at it. This renderer is written here, apart
    from both simulators; its seeds 0-2 served to choose ``CLUSTER_C_MAX``. Returns the image
    and the noise's true power at 0.02-0.08 cycles/px (the field is uniform, so all its
    non-zero frequencies are noise)."""
    rng = np.random.default_rng(seed)
    rho = 12.5 / per_molecule  # molecules per pixel: 12.5 localisations per pixel in all
    mol = rng.uniform(0, n, (rng.poisson(rho * n * n), 2))
    k = rng.poisson(per_molecule, len(mol)) if blinking else np.ones(len(mol), int)
    locs = (np.repeat(mol, k, axis=0) + rng.normal(0, precision_px, (k.sum(), 2))) % n
    hist, _, _ = np.histogram2d(locs[:, 0], locs[:, 1], bins=n, range=[[0, n], [0, n]])
    img = 0.35 * ndi.gaussian_filter(hist, precision_px, mode="wrap") / (rho * per_molecule)
    power = np.abs(np.fft.rfft2(img - img.mean())) ** 2 / img.size
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :])
    low = (f >= 0.02) & (f < 0.08)
    return img, low, float(power[low].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustered_localisations_get_their_low_frequency_noise(seed, monkeypatch):
    """Blinking adds noise at low frequencies that a single blurred-white term, fitted where
    the signal is weak, cannot extrapolate: it predicted a third of the true power there. The
    clustering term brings the prediction within 25 %."""
    import pipeline.estimate.noise as noise

    img, low, true_power = _localisations(seed=seed)
    m = estimate_noise_model(img)
    assert m.a2 > 0 and "clustered" in m.method
    assert m.spectrum(img.shape)[low].mean() == pytest.approx(true_power, rel=0.25)
    monkeypatch.setattr(noise, "CLUSTER_TOL", None)  # the one-term model of before
    one = estimate_noise_model(img)
    assert one.a2 == 0 and one.spectrum(img.shape)[low].mean() < 0.5 * true_power


@pytest.mark.parametrize("precision_px", [1.25, 1.65])
def test_no_clustering_term_where_the_band_cannot_see_one(precision_px, monkeypatch):
    """Wide renderings leave too little of either term above 0.2 cycles/px to tell them apart:
    a term admitted there (two-channel STORM at 0.015 um and precision 25 nm, a smooth map at
    0.02 um and 25 nm) smoothed λ away. There the model stays the one-term model."""
    import pipeline.estimate.noise as noise

    img, _, _ = _localisations(precision_px=precision_px, blinking=False)
    m = estimate_noise_model(img)
    monkeypatch.setattr(noise, "CLUSTER_TOL", None)
    one = estimate_noise_model(img)
    assert m.a2 == 0 and (m.a, m.c, m.b) == (one.a, one.c, one.b)


def test_a_clustered_noise_model_survives_the_run_record():
    """The std's members and a resumed run rebuild the noise model from run.json's dicts
    (``FieldNoise.from_dicts``): the clustering term must come back with it, and records
    written before it existed (no ``a2``, ``c2``) still load as one-term models."""
    from pipeline.estimate.uncertainty import FieldNoise

    img, _, _ = _localisations(seed=0)
    m = estimate_noise_model(img)
    assert m.a2 > 0
    back = FieldNoise.from_dicts([m.to_dict()]).models[0]
    assert back == m
    np.testing.assert_allclose(back.spectrum((64, 64)), m.spectrum((64, 64)))
    old = {k: v for k, v in m.to_dict().items() if k not in ("a2", "c2")}
    assert FieldNoise.from_dicts([old]).models[0].a2 == 0
