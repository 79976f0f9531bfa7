"""Rate estimators. :func:`fit_plane` is the one entry point: lambda, its std and its
identifiability for one plane, for the closed-form and the neural method alike.

- :mod:`.closed_form`: mollified local least squares, ``lam = G_s*(A B) / G_s*(A^2)``;
- :mod:`.bandwidth`: the automatic choice of the mollifier radius and the rate window;
- :mod:`.uncertainty`: the noise model, noise-resampled members and the bias terms of the std;
- :mod:`.networks` and :mod:`.neural`: the paper's field and rate networks, trained per tile;
- :mod:`.fit`: tiles, both methods, blending and identifiability.
"""

from __future__ import annotations

from .bandwidth import BandwidthChoice, choose_bandwidths, estimate_noise, select_bandwidth
from .closed_form import identifiable_mask, linear_terms, local_least_squares
from .fit import PlaneFit, fit_plane, noise_model
from .uncertainty import FieldNoise, coverage

__all__ = [
    "BandwidthChoice",
    "FieldNoise",
    "PlaneFit",
    "choose_bandwidths",
    "coverage",
    "estimate_noise",
    "fit_plane",
    "identifiable_mask",
    "linear_terms",
    "local_least_squares",
    "noise_model",
    "select_bandwidth",
]
