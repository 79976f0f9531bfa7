"""The stress suite: synthetic cases as varied as the images users bring.

Each case is a :class:`StressSpec` (the design) drawn at a seed by :func:`make_stress_case`:
λ and φ_w are drawn, the steady state comes from this package's own solver
(:func:`pipeline.simulate.solver.solve_steady_state`, which shares no code with the inverse
model), then the fields are imaged by a camera (:func:`~pipeline.simulate.render.render_camera`)
or rendered from localisations (:func:`~pipeline.simulate.storm.render_storm`), optionally as
a whole nucleus in a dark background, and the calibration a user would pass is given a
deliberate scale error. ``docs/stress.md`` describes the cases and the seed protocol.

Examples
--------
>>> spec = StressSpec(name="tiny", kind="smooth", channels=1, pixel_size_um=0.03, size_px=64,
...                   lam_scale_um=1.0, calibration_error=(0.1,))
>>> case = make_stress_case(spec, seed=1)
>>> case.image.shape, case.image.dtype, bool(case.foreground.all())
((1, 64, 64), dtype('uint16'), True)
>>> round(case.calibration_given[0].scale / case.calibration[0].scale, 6)
1.1
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from pipeline.config import Calibration

from .case import steady_fields
from .fields import LAMBDA_KINDS, lambda_field
from .imaging import CHANNEL_NAMES
from .render import nucleus_envelope, render_camera
from .solver import INTERFACE_LENGTH_UM, PHI_MAX
from .storm import render_storm, storm_expected

__all__ = ["StressSpec", "StressCase", "STRESS_SPECS", "EXTRA_SPECS", "TUNING_SEEDS",
           "TEST_SEEDS", "illumination_profile",
           "RETIRED_TEST_SEEDS", "is_tuning_data",
           "make_stress_case"]

log = logging.getLogger(__name__)

TUNING_SEEDS: tuple[int, ...] = (11, 23, 37)
"""Seeds on which every rule, constant and default may be chosen, and tables looked at freely.
Seed 37 was once the "held-out" seed of docs/accuracy.md and was looked at; it is tuning data."""

TEST_SEEDS: tuple[int, ...] = (5728, 1047, 5906)
"""Seeds for the test tables only. A test table that is looked at and then followed by a change
makes its seed tuning data: move it to :data:`RETIRED_TEST_SEEDS`, draw a fresh test seed
(``secrets.randbelow(10**4)``), say so in docs/stress.md. Drawn 2026-12-07 for issue 12, after
the neural method's estimate became its ensemble's mean; the seeds before them, and why each
was retired, are in :data:`RETIRED_TEST_SEEDS`."""

RETIRED_TEST_SEEDS: tuple[int, ...] = (101, 202, 303, 854, 3356, 9010, 1695, 801, 4296, 5811,
                                       7930, 4048, 9625, 8634, 3349, 6943, 9692, 7736,
                                       3960, 8645, 9542, 8247, 7167, 5151, 6886, 204, 7454,
                                       8942, 7753, 2685)
"""Former test seeds, used once as held out and then looked at before a change (101, 202, 303:
issue 12's uncertainty was motivated by their table; 854, 3356, 9010: their tables had been read
when the bandwidth rule's at-bound change was made; 1695, 801, 4296: the bandwidth rule's
predicted squared error was chosen on them, with the tuning seeds and the other retired ones;
5811, 7930, 4048: their table's coverage misses on the two-channel calibration error had been
read when the contradicted calibration's std term was added; 9625, 8634, 3349: their closed-form
table showed the bandwidth rule's fallback choosing noise, r -0.26, when no candidate was
reliable, and the fallback was changed; 6943, 9692, 7736: their tables had been read when the
fit's fields stopped being clipped, a change chosen on the tuning seeds; 3960, 8645, 9542: their
table's misses on blinking STORM had been read when the noise model gained its clustering term,
a change chosen on the tuning seeds; 8247, 7167, 5151: their neural table's nucleus misses had
been read when the residual weight gained its floor, chosen on the tuning seeds; 6886, 204,
7454: their neural table had been read when the field network's spacing and the step were
changed, chosen on the tuning seeds; 8942, 7753, 2685: their tables had been read when the
neural estimate became the ensemble's mean, chosen on the tuning seeds).
They are tuning data now and never held out again; they are kept out of :data:`TUNING_SEEDS`
only so that ``--seeds tuning`` stays three seeds."""


def is_tuning_data(seed: int) -> bool:
    """Whether ``seed`` may be used to choose something: a tuning seed or a retired test seed
    (the test seeds are for the held-out tables only).

    >>> is_tuning_data(TUNING_SEEDS[0]), is_tuning_data(TEST_SEEDS[0])
    (True, False)
    """
    return int(seed) in TUNING_SEEDS or int(seed) in RETIRED_TEST_SEEDS


@dataclass(frozen=True)
class StressSpec:
    """The design of one stress case (a seed draws it; see :func:`make_stress_case`).

    Attributes
    ----------
    name : str
        Short name (the case is ``f"{name}_s{seed}"``).
    kind : {"smooth", "lognormal", "step"}
        λ map (:func:`pipeline.simulate.fields.lambda_field`).
    channels : {1, 2}
        1: heterochromatin only (φ_w ≡ 1 − φ_max); 2: chromatin and heterochromatin.
    pixel_size_um, size_px : float, int
        Pixel size and image side.
    lam_scale_um : float
        λ's length scale: the correlation length (lognormal), the shortest wavelength of a band
        ``[ℓ, 1.6 ℓ]`` (smooth) or the radius of the region (step).
    rendering : {"camera", "storm"}
        Camera image or rendered localisations.
    psf_sigma_px, photons, read_noise : float
        Camera: PSF std in pixels, photons per pixel at full occupancy, read noise (ADU).
    locs_per_px, precision_nm, locs_per_molecule : float
        STORM: localisations per pixel at full occupancy, localisation precision, mean
        localisations of one molecule (1: independent localisations; more: blinking).
    nucleus : bool
        A whole elliptical nucleus in a dark background (else the fields fill the image).
    background : float
        Uniform background (fraction of full occupancy) over the whole image.
    calibration_error : tuple of float
        Relative scale error of the calibration a user passes, one value for all channels or
        one per channel (0.1: the given scale is 1.1 times the true one).
    illumination : float
        Relative illumination at the image's corners (:func:`illumination_profile`, a
        Gaussian beam centred on the field); 1, the default, lights the field evenly. It
        multiplies the occupancy before rendering (photons or localisations), not the
        background.
    noise : {"low", "moderate", "high"}
        Noise label: the std of the calibrated heterochromatin field about its noiseless
        rendering (``params["noise_std_heterochromatin"]``) is below 0.012 (low), 0.012-0.035
        (moderate) or above (high) on the tuning seeds. The targets' "moderate noise" cases
        are those marked moderate.
    """

    name: str
    kind: Literal["smooth", "lognormal", "step"]
    channels: Literal[1, 2]
    pixel_size_um: float
    size_px: int
    lam_scale_um: float
    rendering: Literal["camera", "storm"] = "camera"
    psf_sigma_px: float = 0.75
    photons: float = 900.0
    read_noise: float = 2.0
    locs_per_px: float = 20.0
    precision_nm: float = 15.0
    locs_per_molecule: float = 1.0
    nucleus: bool = False
    background: float = 0.0
    calibration_error: tuple[float, ...] = (0.0,)
    noise: Literal["low", "moderate", "high"] = "moderate"
    illumination: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in LAMBDA_KINDS:
            problems.append(f"kind {self.kind!r} is not one of {LAMBDA_KINDS}")
        if self.channels not in (1, 2):
            problems.append(f"channels must be 1 or 2, not {self.channels!r}")
        if self.rendering not in ("camera", "storm"):
            problems.append(f"rendering must be 'camera' or 'storm', not {self.rendering!r}")
        if not 0 < self.pixel_size_um <= 1 or not 32 <= self.size_px <= 2048:
            problems.append(f"pixel_size_um {self.pixel_size_um} / size_px {self.size_px}")
        if len(self.calibration_error) not in (1, self.channels) or any(
            not -1 < e < 1 for e in self.calibration_error
        ):
            problems.append(f"calibration_error {self.calibration_error!r}: one value or one "
                            "per channel, each in (-1, 1)")
        if self.noise not in ("low", "moderate", "high"):
            problems.append(f"noise label {self.noise!r}")
        if not 0 < self.illumination <= 1:
            problems.append(f"illumination {self.illumination!r} must be in (0, 1]")
        if problems:
            raise ValueError(f"stress spec {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> StressSpec:
        """A spec from a dict; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown stress spec key(s) {unknown}; known: {sorted(known)}")
        d = dict(spec)
        if "calibration_error" in d:
            ce = d["calibration_error"]
            d["calibration_error"] = tuple(ce) if np.ndim(ce) else (float(ce),)
        return cls(**d)


@dataclass(frozen=True, eq=False)
class StressCase:
    """A stress case with its truth.

    ``lam``, ``phi_h`` and ``phi_w`` are the steady state on the periodic grid (the nucleus
    envelope multiplies only the rendered image, so inside the nucleus the image shows this
    steady state, and at its edge the model does not hold). ``calibration`` is the true one,
    ``calibration_given`` what a user would pass (with the spec's scale error).
    ``occupancy`` ``(C, Y, X)`` is what was rendered: the shown channels times the envelope
    (a second rendering of it has the same expectation and new noise).
    """

    name: str
    image: np.ndarray
    lam: np.ndarray
    phi_h: np.ndarray
    phi_w: np.ndarray
    pixel_size_um: float
    calibration: tuple[Calibration, ...]
    calibration_given: tuple[Calibration, ...]
    channel_names: tuple[str, ...]
    foreground: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    occupancy: np.ndarray | None = None


def _c(name: str, kind: str, ch: int, px: float, n: int, ell: float, **kw: Any) -> StressSpec:
    return StressSpec(name=name, kind=kind, channels=ch, pixel_size_um=px, size_px=n,  # type: ignore[arg-type]
                      lam_scale_um=ell, **kw)


STRESS_SPECS: tuple[StressSpec, ...] = (
    # camera images: pixel size, PSF, photon level, read noise, λ scale, both channel models
    _c("cam_smooth_1ch", "smooth", 1, 0.02, 256, 1.6),
    _c("cam_lognormal_2ch", "lognormal", 2, 0.02, 256, 0.8),
    _c("cam_step_1ch_px30", "step", 1, 0.03, 192, 1.5, psf_sigma_px=1.0),
    _c("cam_smooth_2ch_px15", "smooth", 2, 0.015, 256, 1.0, psf_sigma_px=0.0, photons=3500,
       read_noise=1.0, noise="low"),
    _c("cam_lognormal_1ch_px60", "lognormal", 1, 0.06, 128, 2.6, psf_sigma_px=1.5),
    _c("cam_lognormal_1ch_short", "lognormal", 1, 0.03, 256, 0.6, psf_sigma_px=1.0),
    _c("cam_smooth_1ch_dim", "smooth", 1, 0.02, 256, 1.6, psf_sigma_px=1.5, photons=150,
       read_noise=6.0, noise="high"),
    _c("cam_step_2ch_dim", "step", 2, 0.03, 192, 1.2, psf_sigma_px=1.0, photons=150,
       noise="high"),
    _c("cam_smooth_2ch_bright", "smooth", 2, 0.04, 192, 2.0, psf_sigma_px=0.5, photons=10000,
       read_noise=1.0, noise="low"),
    # calibration errors of ±10 % in what the user passes
    _c("cam_lognormal_2ch_cal+10", "lognormal", 2, 0.02, 256, 1.0, calibration_error=(0.1,)),
    _c("cam_smooth_1ch_cal-10", "smooth", 1, 0.03, 192, 1.2, calibration_error=(-0.1,)),
    _c("cam_step_2ch_cal+-10", "step", 2, 0.02, 256, 1.0, calibration_error=(0.1, -0.1)),
    # STORM-like renderings: correlated noise over the localisation precision
    _c("storm_smooth_1ch_dense", "smooth", 1, 0.02, 256, 1.6, rendering="storm",
       locs_per_px=50, precision_nm=15),
    _c("storm_lognormal_1ch_sparse", "lognormal", 1, 0.02, 256, 1.2, rendering="storm",
       locs_per_px=5, precision_nm=20, noise="high"),
    _c("storm_smooth_2ch_px15", "smooth", 2, 0.015, 256, 1.2, rendering="storm",
       locs_per_px=20, precision_nm=25),
    _c("storm_step_1ch_px30", "step", 1, 0.03, 192, 1.5, rendering="storm", locs_per_px=10,
       precision_nm=10, noise="high"),
    _c("storm_lognormal_2ch_px40", "lognormal", 2, 0.04, 192, 2.0, rendering="storm",
       locs_per_px=2, precision_nm=25, noise="high"),
    _c("storm_smooth_1ch_blink", "smooth", 1, 0.02, 256, 1.6, rendering="storm",
       locs_per_px=50, precision_nm=15, locs_per_molecule=4, noise="high"),
    # whole nuclei in a dark background
    _c("nuc_cam_smooth_1ch", "smooth", 1, 0.04, 256, 1.6, psf_sigma_px=1.0, nucleus=True,
       background=0.03),
    _c("nuc_cam_lognormal_2ch", "lognormal", 2, 0.03, 256, 1.0, nucleus=True, background=0.03),
    _c("nuc_cam_step_1ch_cal+10", "step", 1, 0.04, 256, 1.5, psf_sigma_px=1.0, photons=400,
       nucleus=True, background=0.05, calibration_error=(0.1,)),
    _c("nuc_storm_smooth_1ch", "smooth", 1, 0.03, 256, 1.6, rendering="storm", locs_per_px=50,
       precision_nm=25, nucleus=True, background=0.02),
    _c("nuc_storm_lognormal_2ch", "lognormal", 2, 0.04, 192, 1.2, rendering="storm",
       locs_per_px=10, precision_nm=20, nucleus=True, background=0.02, noise="high"),
)
"""The stress suite's designs (23): see docs/stress.md for what each dimension covers."""

EXTRA_SPECS: tuple[StressSpec, ...] = (
    # STORM rendered at 10 nm pixels: the rendering's Gaussian is 2 and 3.5 px wide, wider
    # than the noise model's band sees at full resolution
    _c("storm_smooth_1ch_px10", "smooth", 1, 0.01, 384, 1.2, rendering="storm", locs_per_px=10,
       precision_nm=20),
    _c("storm_smooth_1ch_px10w", "smooth", 1, 0.01, 384, 1.2, rendering="storm",
       locs_per_px=10, precision_nm=35),
    _c("storm_smooth_1ch_px10_sparse", "smooth", 1, 0.01, 384, 1.2, rendering="storm",
       locs_per_px=2, precision_nm=20, noise="high"),
    _c("storm_smooth_2ch_px10", "smooth", 2, 0.01, 384, 1.2, rendering="storm", locs_per_px=20,
       precision_nm=20),
)
"""Designs outside the 23 of the held-out tables, added after them for a failure found
outside the suite (docs/bandwidth.md, "Renderings wider than the band"). ``benchmarks/stress.py``
runs one only when its name is given in full (``--specs storm_smooth_1ch_px10``); the
default run and the accuracy tables keep the 23."""


def illumination_profile(shape: tuple[int, int], corner: float) -> np.ndarray:
    """A Gaussian beam centred on the field: 1 at the centre, ``corner`` at the corners.

    >>> p = illumination_profile((65, 65), 0.6)
    >>> float(p[32, 32]), round(float(p[0, 0]), 6), round(float(p[0, 32]), 4)
    (1.0, 0.6, 0.7746)
    """
    y, x = np.indices(shape, dtype=float)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    return corner ** (((y - cy) ** 2 + (x - cx) ** 2) / (cy ** 2 + cx ** 2))


def _lambda(spec: StressSpec, rng: np.random.Generator) -> np.ndarray:
    shape = (spec.size_px, spec.size_px)
    ell, px = spec.lam_scale_um, spec.pixel_size_um
    if spec.kind == "smooth":
        opts: dict[str, Any] = {"wavelength_um": (ell, 1.6 * ell)}
    elif spec.kind == "lognormal":
        opts = {"correlation_um": ell}
    else:
        opts = {"radius_fraction": min(ell / (spec.size_px * px), 0.45 / 1.1)}
    return lambda_field(spec.kind, shape, pixel_size_um=px, rng=rng, **opts)


def _centre_step(lam: np.ndarray, target: tuple[float, float]) -> np.ndarray:
    """Roll a step map (periodically) so that its high region's circular mean lands on
    ``target`` (pixels): a nucleus then contains the step's edge."""
    high = lam > np.sqrt(lam.min() * lam.max())
    shift = []
    for axis, n in enumerate(lam.shape):
        ang = 2 * np.pi * (np.nonzero(high)[axis] + 0.5) / n
        centre = (np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) % (2 * np.pi)) * n / (2 * np.pi)
        shift.append(int(round(target[axis] - centre)))
    return np.roll(lam, shift, axis=(0, 1))


def make_stress_case(spec: dict[str, Any] | StressSpec, seed: int,
                     noise_draw: int = 0) -> StressCase:
    """Draw one stress case of ``spec`` at ``seed``.

    λ, φ_w, the nucleus and the noise come from four independent streams spawned from
    ``(seed, crc32(spec.name))``, so one seed gives unrelated cases for different specs and
    the same case every time.

    Parameters
    ----------
    spec : StressSpec or dict
        The design (a dict is read with :meth:`StressSpec.from_dict`).
    seed : int
        The draw (see :data:`TUNING_SEEDS` and :data:`TEST_SEEDS`).
    noise_draw : int
        0 (the case itself) or another replicate of its noise: the same λ, φ_w and nucleus,
        the photons or localisations drawn again from a stream of their own
        (benchmarks/noise_replicates.py separates an estimator's noise from its bias so).
    """
    if isinstance(spec, dict):
        spec = StressSpec.from_dict(spec)
    shape = (spec.size_px, spec.size_px)
    px = spec.pixel_size_um
    streams = np.random.SeedSequence([int(seed), zlib.crc32(spec.name.encode())]).spawn(4)
    rng_lam, rng_water, rng_nuc, rng_noise = (np.random.default_rng(s) for s in streams)
    if noise_draw:
        rng_noise = np.random.default_rng(
            np.random.SeedSequence([int(seed), zlib.crc32(spec.name.encode()), int(noise_draw)]))

    lam = _lambda(spec, rng_lam)
    envelope, foreground, geometry = (np.ones(shape), np.ones(shape, bool), {})
    if spec.nucleus:
        envelope, foreground, geometry = nucleus_envelope(shape, pixel_size_um=px, rng=rng_nuc)
        if spec.kind == "step":  # put the step's edge inside the nucleus
            target = (geometry["centre_y_um"] / px - 0.5, geometry["centre_x_um"] / px - 0.5)
            lam = _centre_step(lam, target)
    water: dict[str, float] = {}
    if spec.channels != 1:
        smooth = max(0.04, 2 * px)
        water = {"smooth_um": smooth, "domain_size_um": max(0.1, 2.5 * smooth)}
    phi_w, phi_d, phi_h, info = steady_fields(lam, spec.channels, pixel_size_um=px,
                                              rng=rng_water, water_options=water)
    shown = [phi_h] if spec.channels == 1 else [1.0 - phi_w, phi_h]
    occupancy = np.stack(shown) * envelope
    if spec.illumination != 1.0:  # an uneven beam lights the occupancy, not the background
        occupancy = occupancy * illumination_profile(shape, spec.illumination)
    if spec.rendering == "camera":
        image, calibration, clean = render_camera(
            occupancy, pixel_size_um=px, psf_sigma_px=spec.psf_sigma_px, photons=spec.photons,
            read_noise=spec.read_noise, background=spec.background, rng=rng_noise)
    else:
        precision = spec.precision_nm / 1000.0
        image, calibration = render_storm(
            occupancy, pixel_size_um=px, locs_per_px=spec.locs_per_px, precision_um=precision,
            background=spec.background, locs_per_molecule=spec.locs_per_molecule,
            rng=rng_noise)
        clean = np.stack([storm_expected(o, precision_um=precision, pixel_size_um=px)
                          for o in occupancy])
    errors = spec.calibration_error * (spec.channels if len(spec.calibration_error) == 1 else 1)
    given = tuple(Calibration(offset=c.offset, scale=c.scale * (1.0 + e))
                  for c, e in zip(calibration, errors, strict=True))
    het = (image[-1].astype(float) - calibration[-1].offset) * calibration[-1].scale
    noise_std = float(np.std((het - clean[-1])[foreground]))
    params = asdict(spec) | {
        "seed": int(seed),
        "phi_max": PHI_MAX,
        "interface_length_um": INTERFACE_LENGTH_UM,
        "water_options": water,
        "nucleus_geometry": geometry,
        "solver_steps": int(info["steps"]),
        "solver_residual_max": float(info["residual_max"]),
        "noise_std_heterochromatin": noise_std,
    }
    name = f"{spec.name}_s{seed}" + (f"_n{noise_draw}" if noise_draw else "")
    log.info("stress case %s: %d solver steps, field noise std %.3f", name, info["steps"],
             noise_std)
    return StressCase(name=name, image=image, lam=lam, phi_h=phi_h, phi_w=phi_w,
                      pixel_size_um=float(px), calibration=calibration,
                      calibration_given=given, channel_names=CHANNEL_NAMES[spec.channels],
                      foreground=foreground, params=params, occupancy=occupancy)
