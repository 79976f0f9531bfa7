"""The fourth-order chromatin steady-state model (SCIENCE.md section 1).

Fields (channel order): ``phi_h`` (heterochromatin fraction) and ``phi_w`` (nucleoplasm).
With ``phi_e = 1 - phi_w - phi_h`` and ``phi_d = phi_h - phi_e``::

    mu_d   = -phi_e + g(phi_h) - l^2 lap(phi_d),   g(p) = p (pm - p)(pm - 2p)
    R      = lap(mu_d) + 2 (lam phi_e - phi_h) = A lam - B
    A      = 2 phi_e
    B      = 2 phi_h - lap(mu_d)
    lap(mu_d) = -lap(phi_e) + g'(phi_h) lap(phi_h) + g''(phi_h) |grad phi_h|^2 - l^2 bilap(phi_d)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ChromatinModel", "g", "g_prime", "g_second"]


def g(phi: Any, phi_max: float) -> Any:
    """The double-well-type nonlinearity ``phi (phi_max - phi)(phi_max - 2 phi)``."""
    return phi * (phi_max - phi) * (phi_max - 2 * phi)


def g_prime(phi: Any, phi_max: float) -> Any:
    """``g'(phi) = phi_max^2 - 6 phi_max phi + 6 phi^2``."""
    return phi_max**2 - 6 * phi_max * phi + 6 * phi**2


def g_second(phi: Any, phi_max: float) -> Any:
    """``g''(phi) = 12 phi - 6 phi_max``."""
    return 12 * phi - 6 * phi_max


@dataclass(frozen=True)
class ChromatinModel:
    """Steady state of the chromatin reaction-diffusion model, linear in ``lam = G_me/G_ac``.

    Parameters
    ----------
    phi_max
        Maximum heterochromatin packing fraction (0.7).
    interface_length_um
        Interface length ``l`` in micrometres (0.03).

    Examples
    --------
    >>> import numpy as np
    >>> m = ChromatinModel()
    >>> z = np.zeros((2, 4, 4)); d = {k: z.copy() for k in m.derivatives}
    >>> d["u"][0] = 0.35; d["u"][1] = 0.3   # phi_h = 0.35, phi_w = 0.3: phi_e = 0.35
    >>> A, B = m.linear_terms(d)
    >>> float(B[0, 0] / A[0, 0])             # uniform steady state: lam = phi_h / phi_e
    1.0
    """

    phi_max: float = 0.7
    interface_length_um: float = 0.03
    name: str = "chromatin"
    order: int = 4
    fields: tuple[str, ...] = ("phi_h", "phi_w")
    derivatives: tuple[str, ...] = ("u", "x", "y", "lap", "bilap")

    def laplacian_mu(self, d: Mapping[str, Any]) -> Any:
        """``lap(mu_d)`` from the derivative maps of ``(phi_h, phi_w)``."""
        ph, lap_h = d["u"][..., 0, :, :], d["lap"][..., 0, :, :]
        hx, hy = d["x"][..., 0, :, :], d["y"][..., 0, :, :]
        lap_w = d["lap"][..., 1, :, :]
        bilap_h, bilap_w = d["bilap"][..., 0, :, :], d["bilap"][..., 1, :, :]
        lap_e = -lap_w - lap_h
        # phi_d = phi_h - phi_e = 2 phi_h + phi_w - 1
        bilap_d = 2 * bilap_h + bilap_w
        pm, l2 = self.phi_max, self.interface_length_um**2
        return (
            -lap_e
            + g_prime(ph, pm) * lap_h
            + g_second(ph, pm) * (hx**2 + hy**2)
            - l2 * bilap_d
        )

    def linear_terms(self, d: Mapping[str, Any]) -> tuple[Any, Any]:
        """``(A, B)`` with ``R = A lam - B``: ``A = 2 phi_e``, ``B = 2 phi_h - lap(mu_d)``."""
        ph, pw = d["u"][..., 0, :, :], d["u"][..., 1, :, :]
        pe = 1 - pw - ph
        return 2 * pe, 2 * ph - self.laplacian_mu(d)
