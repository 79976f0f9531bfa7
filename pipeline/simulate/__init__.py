"""Synthetic ground truth: λ and φ_w fields, the steady-state solver, imaging and files.

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
from .solver import (
    SteadyStateNotConverged,
    g,
    g_prime,
    g_second,
    local_equilibrium,
    solve_steady_state,
    steady_state_residual,
)

__all__ = [
    "CHANNEL_NAMES",
    "LAMBDA_KINDS",
    "LambdaKind",
    "SteadyStateNotConverged",
    "SyntheticCase",
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
    "photons_for_noise",
    "render_image",
    "simulate_case",
    "simulate_folder",
    "smooth_lambda",
    "solve_steady_state",
    "steady_state_residual",
    "step_lambda",
    "water_field",
    "write_case",
]
