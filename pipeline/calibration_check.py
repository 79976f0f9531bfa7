"""Does the image contradict the calibration the user passed? (two channels)

A user's ``--calibration OFFSET:SCALE,OFFSET:SCALE`` is used as given. But the ratio of the
two channels' scales decides λ's two-channel *pattern*, not only its level: opposite 10 % errors
in the two scales (a 22 % ratio error) left r 0.05-0.44 on the stress suite, against 0.93-0.95
from the image's own calibration. The self-calibration criterion
(:mod:`pipeline.self_calibration`: the noise-free residual energy of the local fit, which a
wrong heterochromatin/chromatin ratio raises with domain-shaped residual) can say so. This
module evaluates it along the heterochromatin scale around the user's, with the user's offsets
and chromatin scale kept, and reports the ratio the image prefers.

The calibration is **contradicted** when all of these hold:

- the image can judge it: the criterion is positive at its minimum and rises by at least
  :data:`~pipeline.self_calibration.MIN_CONTRAST` of its value there when the scale moves
  10 % either way (the self-calibration's own identifiability figure);
- the preferred ratio differs from the user's by at least :data:`CHECK_TOLERANCE` (the
  self-calibration's ratio was within -4 % to +3 % of the truth on every identified camera
  case of docs/calibration.md, so a smaller difference is within its own error);
- the criterion at the user's ratio exceeds its minimum by at least ``MIN_CONTRAST`` of it.

A calibration that puts more than :data:`~pipeline.self_calibration.MAX_UNPHYSICAL` of the
pixels outside ``0 <= φ_h <= c`` is not checked (the criterion is not evaluated there; on the
STORM-like cases noise alone did this under the true calibration).

By default nothing is changed: the run warns, records the check in the plane's calibration
record, and flags the plane ``calibration-contradicted`` (``summary_images.csv``). With
``calibration_check = "fix"`` the heterochromatin scale is multiplied by the preferred ratio
(:func:`pipeline.calibration.corrected_calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.config import Calibration, ChannelRole
from pipeline.self_calibration import (
    CROP_PX,
    MAX_UNPHYSICAL,
    MIN_CONTRAST,
    _Problem,
    criterion_field_px,
    scale_contrast,
)

__all__ = ["CHECK_FACTORS", "CHECK_TOLERANCE", "check_calibration"]

CHECK_FACTORS = np.exp(np.linspace(np.log(1 / 1.5), np.log(1.5), 9))
"""Heterochromatin scales tried, relative to the user's (the ratio's range the check sees)."""
CHECK_TOLERANCE = 0.1
"""Smallest relative ratio difference reported as a contradiction (the self-calibration's own
ratio error on identified camera images was -4 % to +3 %)."""


def _vertex(x: np.ndarray, y: np.ndarray) -> float:
    """The abscissa of the parabola's vertex through three points (``x[1]`` if it is not a
    minimum)."""
    den = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
    a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / den
    b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / den
    if not (np.isfinite(a) and a > 0):
        return float(x[1])
    return float(np.clip(-b / (2 * a), x[0], x[2]))


def check_calibration(planes: np.ndarray, roles: Sequence[ChannelRole],
                      calibrations: Sequence[Calibration], pixel_size_um: float, model: Any, *,
                      foreground: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Whether one plane's two-channel image contradicts the user's calibration.

    Parameters
    ----------
    planes : (2, Y, X)
        Raw intensities of one plane (the criterion uses a central crop of
        :data:`~pipeline.self_calibration.CROP_PX`).
    roles, calibrations
        Channel roles and the user's calibrations, in C order.
    foreground
        Nuclear pixels (the criterion uses those deeper than its mollifier radius).

    Returns
    -------
    dict
        JSON-able: ``checked`` (whether the image could judge the calibration),
        ``contradicted``, ``preferred_ratio`` (the heterochromatin/chromatin scale ratio the
        image prefers, relative to the user's), ``excess`` (the criterion's rise at the user's
        ratio over its minimum, relative), ``contrast``, ``unphysical`` (the fraction of
        nuclear pixels outside ``0 <= φ_h <= c`` under the user's calibration), ``statement``
        and ``evaluations``.
    """
    roles = tuple(roles)
    ic, ih = roles.index("chromatin"), roles.index("heterochromatin")
    out: dict[str, Any] = {"checked": False, "contradicted": False, "preferred_ratio": None,
                           "excess": None, "contrast": None, "unphysical": None,
                           "evaluations": 0}
    side, need = min(min(np.shape(planes)[-2:]), CROP_PX), criterion_field_px(pixel_size_um)
    if side < need:
        out["statement"] = (f"not checked: the field ({side} px) is too small for the "
                            f"criterion (needs {need} px)")
        return out
    try:
        prob = _Problem(planes, roles, pixel_size_um, model,
                        [c.offset for c in calibrations], foreground, seed,
                        chromatin_scale=calibrations[ic].scale)
    except ValueError as exc:
        out["statement"] = f"not checked: {exc}"
        return out
    a_user = calibrations[ih].scale / prob.unit_h
    bad = prob.unphysical(a_user, 0.0)
    out["unphysical"] = bad
    if bad > MAX_UNPHYSICAL:  # noisy renderings do this under the true calibration too
        out["statement"] = (f"not checked: the calibration puts {bad:.0%} of the pixels "
                            "outside 0 <= heterochromatin <= chromatin, where the criterion "
                            "is not evaluated (noise alone does this on STORM-like images)")
        return out
    vals = np.array([prob(a_user * f, 0.0) for f in CHECK_FACTORS])
    n_eval = len(vals)
    logf = np.log(CHECK_FACTORS)
    fin = np.isfinite(vals)
    j = int(np.argmin(np.where(fin, vals, np.inf)))
    f_star, best = float(CHECK_FACTORS[j]), float(vals[j])
    if 0 < j < len(vals) - 1 and fin[j - 1 : j + 2].all():
        f_try = float(np.exp(_vertex(logf[j - 1 : j + 2], vals[j - 1 : j + 2])))
        v_try = prob(a_user * f_try, 0.0)
        n_eval += 1
        if np.isfinite(v_try) and v_try < best:
            f_star, best = f_try, float(v_try)
    contrast = scale_contrast(lambda a: prob(a, 0.0), a_user * f_star, best)
    n_eval += 2
    at_user = float(vals[len(vals) // 2])  # CHECK_FACTORS is symmetric in log: the middle is 1
    excess = float((at_user - best) / abs(best)) if best != 0 else 0.0
    checked = bool(np.isfinite(best) and best > 0 and contrast >= MIN_CONTRAST)
    off = abs(np.log(f_star)) >= np.log1p(CHECK_TOLERANCE) * (1 - 1e-9)
    contradicted = bool(checked and off and excess >= MIN_CONTRAST)
    edge = j in (0, len(vals) - 1)
    pct = f"{round(f_star - 1, 2) + 0.0:+.0%}" + (" or more" if edge else "")  # no "-0%"
    if not checked:
        why = (f"criterion contrast {contrast:.2f} < {MIN_CONTRAST}" if contrast < MIN_CONTRAST
               else "the criterion is not positive at its minimum: noise, not residual")
        statement = f"not checked: the image cannot judge the calibration ({why})"
    elif contradicted:
        statement = (f"the image's physics prefers a heterochromatin/chromatin scale ratio "
                     f"{pct} from the one given (the criterion is {excess:.0%} above its "
                     f"minimum at yours; contrast {contrast:.2f}): λ's pattern may be wrong")
    else:
        statement = (f"consistent with the image: it prefers a heterochromatin/chromatin "
                     f"scale ratio {pct} from the one given (a contradiction needs "
                     f"{CHECK_TOLERANCE:.0%} or more, and a clearly better criterion)")
    out |= {"checked": checked, "contradicted": contradicted, "preferred_ratio": f_star,
            "excess": excess, "contrast": contrast, "evaluations": n_eval,
            "statement": statement}
    return out
