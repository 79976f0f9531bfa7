"""PDE residuals (chromatin 4th order, heat 2nd order, Langevin 1st order) and observation
models. Adding a PDE means adding one module with a ``linear_terms`` function and its test."""

from .base import LinearResidualModel, residual
from .chromatin import ChromatinModel
from .heat import HeatModel
from .langevin import LangevinModel

__all__ = ["LinearResidualModel", "residual", "ChromatinModel", "HeatModel", "LangevinModel"]
