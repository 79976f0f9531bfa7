"""Synthetic ground truth: λ and φ_w fields, the steady-state solver, imaging and files.

The generator shares no code with the inverse model (it never imports ``pipeline.physics`` or
``pipeline.estimate``; tests/test_stress.py checks it). :mod:`pipeline.simulate.stress` draws
the stress suite: camera and STORM-like renderings, whole nuclei, calibration errors.

Examples
--------
>>> from pipeline.simulate import simulate_case
>>> case = simulate_case(kind="lognormal", channels=2, noise=0.02, shape=(32, 32), seed=1)
>>> case.image.dtype, case.channel_names
(dtype('uint16'), ('chromatin', 'heterochromatin'))
"""

from .case import SyntheticCase, case_name, simulate_case
from .fields import (
    LAMBDA_KINDS,
    LambdaKind,
    lambda_field,
    lognormal_lambda,
    smooth_lambda,
    step_lambda,
    water_field,
)
from .files import default_truth_dir, load_truth, simulate_folder, write_case
from .imaging import CHANNEL_NAMES, field_noise_std, photons_for_noise, render_image
from .render import nucleus_envelope, render_camera
from .solver import (
    SteadyStateNotConverged,
    g,
    g_prime,
    g_second,
    local_equilibrium,
    solve_steady_state,
    steady_state_residual,
)
from .storm import render_storm
from .stress import (
    STRESS_SPECS,
    TEST_SEEDS,
    TUNING_SEEDS,
    StressCase,
    StressSpec,
    make_stress_case,
)

__all__ = [
    "CHANNEL_NAMES",
    "LAMBDA_KINDS",
    "LambdaKind",
    "STRESS_SPECS",
    "SteadyStateNotConverged",
    "StressCase",
    "StressSpec",
    "SyntheticCase",
    "TEST_SEEDS",
    "TUNING_SEEDS",
    "case_name",
    "default_truth_dir",
    "field_noise_std",
    "g",
    "g_prime",
    "g_second",
    "lambda_field",
    "load_truth",
    "local_equilibrium",
    "lognormal_lambda",
    "make_stress_case",
    "nucleus_envelope",
    "photons_for_noise",
    "render_camera",
    "render_image",
    "render_storm",
    "simulate_case",
    "simulate_folder",
    "smooth_lambda",
    "solve_steady_state",
    "steady_state_residual",
    "step_lambda",
    "water_field",
    "write_case",
]
