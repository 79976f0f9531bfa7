"""One synthetic ground-truth case: λ and φ_w drawn, steady state solved, image rendered."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipeline.config import Calibration

from ._grid import check_shape
from .fields import LAMBDA_KINDS, LambdaKind, lambda_field, water_field
from .imaging import CHANNEL_NAMES, render_image
from .solver import INTERFACE_LENGTH_UM, PHI_MAX, solve_steady_state

__all__ = ["SyntheticCase", "simulate_case", "case_name", "steady_fields"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """A simulated image with its ground truth.

    Attributes
    ----------
    name : str
        e.g. ``"smooth_1ch_s0"``.
    lam, phi_w, phi_d, phi_h : ndarray (Y, X)
        True rate ratio, nucleoplasm fraction, order parameter and heterochromatin fraction
        (the converged steady state).
    image : ndarray of uint16 (C, Y, X)
        The rendered image (``C = 1`` or ``2``).
    pixel_size_um : float
    calibration : tuple of :class:`pipeline.config.Calibration`
        True per-channel calibration, ``field = (image - offset) * scale``.
    channel_names : tuple of str
        ``("heterochromatin",)`` or ``("chromatin", "heterochromatin")``.
    parameters : dict
        Every input of :func:`simulate_case` (JSON-serialisable).
    solver_info : dict
        What :func:`~pipeline.simulate.solver.solve_steady_state` reported.
    """

    name: str
    lam: np.ndarray
    phi_w: np.ndarray
    phi_d: np.ndarray
    phi_h: np.ndarray
    image: np.ndarray
    pixel_size_um: float
    calibration: tuple[Calibration, ...]
    channel_names: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    solver_info: dict[str, Any] = field(default_factory=dict)

    @property
    def phi_e(self) -> np.ndarray:
        """Euchromatin fraction ``(c - φ_d) / 2``."""
        return (1.0 - self.phi_w - self.phi_d) / 2

    @property
    def chromatin(self) -> np.ndarray:
        """Chromatin fraction ``c = 1 - φ_w``."""
        return 1.0 - self.phi_w

    def calibrated(self) -> np.ndarray:
        """The image mapped back to fields with the true calibration, shape (C, Y, X)."""
        return np.stack(
            [
                (ch.astype(float) - cal.offset) * cal.scale
                for ch, cal in zip(self.image, self.calibration, strict=True)
            ]
        )


def case_name(kind: str, channels: int, seed: int) -> str:
    """File stem of a case: ``f"{kind}_{channels}ch_s{seed}"``.

    >>> case_name("smooth", 1, 0)
    'smooth_1ch_s0'
    """
    return f"{kind}_{channels}ch_s{seed}"


def steady_fields(
    lam: np.ndarray,
    channels: Literal[1, 2],
    *,
    pixel_size_um: float,
    rng: np.random.Generator,
    phi_max: float = PHI_MAX,
    interface_length_um: float = INTERFACE_LENGTH_UM,
    water_options: dict[str, Any] | None = None,
    **solver: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The true fields for a rate map ``lam``: ``(phi_w, phi_d, phi_h, solver_info)``.

    One channel: ``φ_w ≡ 1 - phi_max``; two: ``φ_w`` from
    :func:`~pipeline.simulate.fields.water_field` (drawn from ``rng``, with
    ``water_options``). ``φ_d`` is the steady state
    (:func:`~pipeline.simulate.solver.solve_steady_state`, ``solver`` its settings) and
    ``φ_h = (c + φ_d) / 2``.
    """
    shape = lam.shape
    if channels == 1:
        phi_w = np.full(shape, 1.0 - phi_max)
    else:
        phi_w = water_field(shape, pixel_size_um=pixel_size_um, rng=rng, phi_max=phi_max,
                            **(water_options or {}))
    phi_d, info = solve_steady_state(lam, phi_w, pixel_size_um=pixel_size_um, phi_max=phi_max,
                                     interface_length_um=interface_length_um, **solver)
    return phi_w, phi_d, (1.0 - phi_w + phi_d) / 2, info


def simulate_case(
    *,
    kind: LambdaKind,
    channels: Literal[1, 2],
    noise: float,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.02,
    seed: int = 0,
    phi_max: float = PHI_MAX,
    interface_length_um: float = INTERFACE_LENGTH_UM,
    psf_sigma_um: float = 0.015,
    read_noise: float = 2.0,
    offset: float = 100.0,
    photons: float | None = None,
    lambda_options: dict[str, Any] | None = None,
    water_options: dict[str, Any] | None = None,
    dt: float = 0.05,
    tol: float = 1e-6,
    max_steps: int = 20000,
) -> SyntheticCase:
    """Simulate one ground-truth case.

    λ, φ_w and the camera noise come from three independent streams spawned from ``seed``, so
    the same ``seed`` and ``kind`` give the same λ for one and two channels.

    Parameters
    ----------
    kind : {"smooth", "lognormal", "step"}
        λ field (see :func:`~pipeline.simulate.fields.lambda_field`).
    channels : {1, 2}
        1: φ_w ≡ 1 - phi_max and one heterochromatin channel. 2: φ_w from
        :func:`~pipeline.simulate.fields.water_field`, channels chromatin and heterochromatin.
    noise : float
        Std of the calibrated field at mid intensity (0 for a noiseless image).
    shape, pixel_size_um, seed
        Grid (Y, X), pixel size in µm, random seed.
    phi_max, interface_length_um
        Model constants.
    psf_sigma_um, read_noise, offset, photons
        Imaging (see :func:`~pipeline.simulate.imaging.render_image`).
    lambda_options, water_options : dict, optional
        Extra options for the λ field and the water field.
    dt, tol, max_steps
        Solver settings (see :func:`~pipeline.simulate.solver.solve_steady_state`).

    Examples
    --------
    >>> case = simulate_case(kind="smooth", channels=1, noise=0.02, shape=(32, 32))
    >>> case.name, case.image.shape, case.solver_info["residual_max"] < 1e-6
    ('smooth_1ch_s0', (1, 32, 32), True)
    """
    shape = check_shape(shape)
    if kind not in LAMBDA_KINDS:
        raise ValueError(f"unknown lambda kind {kind!r}; use one of {LAMBDA_KINDS}")
    if channels not in CHANNEL_NAMES:
        raise ValueError(f"channels must be 1 or 2, got {channels!r}")
    lambda_options = dict(lambda_options or {})
    water_options = dict(water_options or {})
    parameters: dict[str, Any] = {
        "kind": kind,
        "channels": int(channels),
        "noise": float(noise),
        "shape": list(shape),
        "pixel_size_um": float(pixel_size_um),
        "seed": int(seed),
        "phi_max": float(phi_max),
        "interface_length_um": float(interface_length_um),
        "psf_sigma_um": float(psf_sigma_um),
        "read_noise": float(read_noise),
        "offset": float(offset),
        "photons": None if photons is None else float(photons),
        "lambda_options": lambda_options,
        "water_options": water_options,
        "dt": float(dt),
        "tol": float(tol),
        "max_steps": int(max_steps),
    }
    rng_lam, rng_water, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    lam = lambda_field(kind, shape, pixel_size_um=pixel_size_um, rng=rng_lam, **lambda_options)
    phi_w, phi_d, phi_h, info = steady_fields(
        lam, channels, pixel_size_um=pixel_size_um, rng=rng_water, phi_max=phi_max,
        interface_length_um=interface_length_um, water_options=water_options, dt=dt, tol=tol,
        max_steps=max_steps,
    )
    image, calibration = render_image(
        phi_h,
        phi_w,
        channels=channels,
        pixel_size_um=pixel_size_um,
        psf_sigma_um=psf_sigma_um,
        noise=noise,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
        phi_max=phi_max,
        rng=rng_noise,
    )
    name = case_name(kind, channels, seed)
    log.info(
        "simulated %s: %d solver steps, max|R| = %.1e", name, info["steps"], info["residual_max"]
    )
    return SyntheticCase(
        name=name,
        lam=lam,
        phi_w=phi_w,
        phi_d=phi_d,
        phi_h=phi_h,
        image=image,
        pixel_size_um=float(pixel_size_um),
        calibration=calibration,
        channel_names=CHANNEL_NAMES[channels],
        parameters=parameters,
        solver_info=info,
    )
