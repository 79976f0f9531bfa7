"""Observation models: from calibrated channel intensities to volume fractions (docs/science.md §2).

Each channel is calibrated as ``field = (intensity - offset) * scale``.

- **two-channel**: the ``chromatin`` channel gives c = 1 − φ_w (clipped to [0, 1]); the
  ``heterochromatin`` channel gives φ_h (clipped to [0, c]).
- **single-channel**: the ``heterochromatin`` channel gives φ_h (clipped to [0, φ_max]);
  φ_w ≡ 1 − φ_max.

``"auto"`` (``--calibration auto``) maps the 0.5th percentile of a channel to 0 and the 99.5th
to 1 (chromatin) or φ_max (heterochromatin). Absolute λ then rests on that assumption, and the
returned record says so. On two-channel images this rule can leave λ's pattern uncorrelated
with the truth (docs/calibration.md); the run's default, ``"image"``, calibrates from the image
instead (:mod:`pipeline.calibration`) and uses :func:`to_fields` with the pairs it finds.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> planes = rng.uniform(100, 200, size=(2, 16, 16))
>>> fields, record = to_fields(planes, ("chromatin", "heterochromatin"), "auto")
>>> fields.shape, record["model"]
((2, 16, 16), 'two-channel')
>>> bool(np.all(fields[0] <= 1 - fields[1] + 1e-12))  # phi_h <= c
True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pipeline.config import PHI_MAX, Calibration, ChannelRole

__all__ = ["AUTO_PERCENTILES", "auto_calibration", "rescaled_fields", "to_fields"]

log = logging.getLogger(__name__)

AUTO_PERCENTILES = (0.5, 99.5)
"""Percentiles mapped to 0 and to full occupancy by :func:`auto_calibration`."""


def auto_calibration(plane: Any, role: ChannelRole, *, phi_max: float = PHI_MAX) -> Calibration:
    """Calibration mapping the 0.5th percentile to 0 and the 99.5th to 1 or ``phi_max``.

    Parameters
    ----------
    plane : array, shape (Y, X)
        One channel of one plane (NaN ignored).
    role : {"chromatin", "heterochromatin"}
        The 99.5th percentile becomes 1 for chromatin, ``phi_max`` for heterochromatin.
    phi_max : float
        Largest heterochromatin fraction.

    Raises
    ------
    ValueError
        If the channel is (almost) constant, so that no scale can be derived.

    Examples
    --------
    >>> import numpy as np
    >>> cal = auto_calibration(np.linspace(0, 1000, 10_100).reshape(100, 101), "chromatin")
    >>> round(cal.offset, 6), round(cal.scale * 990, 6)
    (5.0, 1.0)
    """
    _check_phi_max(phi_max)
    if role not in ("chromatin", "heterochromatin"):
        raise ValueError(f"unknown channel role {role!r}; use 'chromatin' or 'heterochromatin'")
    values = np.asarray(plane)  # integers are read as they are: no float64 copy of a plane
    if values.dtype.kind not in "iuf":
        values = values.astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"auto_calibration expects one (Y, X) plane, got shape {values.shape}")
    if values.dtype.kind == "f":
        if not np.isfinite(values).any():
            raise ValueError(f"the {role} channel has no finite value to calibrate from")
        lo, hi = np.nanpercentile(values.astype(np.float64, copy=False), AUTO_PERCENTILES)
    else:
        lo, hi = np.percentile(values, AUTO_PERCENTILES)
    span = hi - lo
    if not span > 1e-12 * max(abs(lo), abs(hi), 1.0):
        raise ValueError(
            f"the {role} channel is constant between its {AUTO_PERCENTILES[0]}th and "
            f"{AUTO_PERCENTILES[1]}th percentiles ({lo:g}); auto-calibration needs contrast. "
            "Pass --calibration OFFSET:SCALE"
        )
    target = 1.0 if role == "chromatin" else phi_max
    return Calibration(offset=float(lo), scale=float(target / span))


_BLOCK_PX = 1 << 22
"""Pixels per block of rows when the fields are stored in another dtype than float64."""


def _fields_into(out: np.ndarray, by_role: dict[str, tuple[np.ndarray, Calibration]],
                 model: str, phi_max: float, clip: bool = True) -> None:
    """``[phi_h, phi_w]`` of one block into ``out``, computed in float64."""
    f = out if out.dtype == np.float64 else np.empty(out.shape, np.float64)

    def calibrate_into(dst: np.ndarray, role: str) -> np.ndarray:
        ch, cal = by_role[role]
        np.subtract(ch, cal.offset, out=dst, dtype=np.float64)
        return np.multiply(dst, cal.scale, out=dst)

    # unclipped, the fields are linear in the data: noise keeps its mean
    if model == "single-channel":
        h = calibrate_into(f[0], "heterochromatin")
        if clip:
            np.clip(h, 0.0, phi_max, out=h)
        f[1] = 1.0 - phi_max
    else:
        c = calibrate_into(f[1], "chromatin")
        h = calibrate_into(f[0], "heterochromatin")
        if clip:
            np.clip(c, 0.0, 1.0, out=c)
            np.clip(h, 0.0, c, out=h)
        np.subtract(1.0, c, out=f[1])  # phi_w = 1 - c, after phi_h is clipped by c
    if f is not out:
        out[...] = f


def _check_phi_max(phi_max: float) -> None:
    if not 0 < phi_max < 1:
        raise ValueError(f"phi_max must lie in (0, 1), got {phi_max!r}")


def _assumption(model: str, phi_max: float) -> str:
    targets = (
        f"1 for chromatin and φ_max={phi_max:g} for heterochromatin"
        if model == "two-channel"
        else f"φ_max={phi_max:g} for heterochromatin"
    )
    lo, hi = AUTO_PERCENTILES
    return (
        f"absolute λ rests on auto-calibration: in each plane the {lo:g}th intensity percentile "
        f"of every channel is taken as zero occupancy and the {hi:g}th as full occupancy "
        f"({targets}). λ maps are comparable within an image; comparing absolute values "
        "across images assumes the same extremes, unless --calibration is given."
    )


def to_fields(
    planes: Any,
    roles: Sequence[ChannelRole],
    calibration: Sequence[Calibration] | Literal["auto"],
    *,
    phi_max: float = PHI_MAX,
    dtype: Any = np.float64,
    clip: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Turn one plane's channels into ``[phi_h, phi_w]`` under the observation model.

    Parameters
    ----------
    planes : array, shape (C, Y, X)
        The channels of one plane (numpy or dask), C = 1 or 2.
    roles : sequence of {"chromatin", "heterochromatin"}
        Role of each channel, in C order: ``("heterochromatin",)`` or both roles.
    calibration : "auto" or sequence of Calibration
        One (offset, scale) per channel, or ``"auto"`` (see :func:`auto_calibration`).
    phi_max : float
        Largest heterochromatin fraction.
    dtype : numpy dtype
        Of the fields. They are always computed in float64; float32 (what the fit holds)
        rounds them once, a block of rows at a time, without a float64 copy of the plane.
    clip : bool
        Clip the fractions to their physical ranges (phi_h in [0, phi_max] for one channel;
        chromatin in [0, 1] and phi_h in [0, chromatin] for two). The fit's fields are not
        clipped (``False``): clipping noisy values moves the fields' mean where the signal
        is near a bound, and the members of the std would resample noise the data no longer
        have.

    Returns
    -------
    fields : ndarray, shape (2, Y, X), ``dtype`` (float64 by default)
        ``fields[0]`` = φ_h, ``fields[1]`` = φ_w.
    record : dict
        JSON-able: ``model``, ``phi_max``, ``channels`` (index, role, offset, scale, source),
        and ``assumption`` when auto-calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> from pipeline.config import Calibration
    >>> img = np.array([[[0.0, 50.0], [100.0, 200.0]]])
    >>> f, rec = to_fields(img, ("heterochromatin",), (Calibration(offset=0, scale=0.005),))
    >>> f[0].tolist(), float(f[1, 0, 0]), rec["model"]
    ([[0.0, 0.25], [0.5, 0.7]], 0.30000000000000004, 'single-channel')
    """
    _check_phi_max(phi_max)
    data = np.asarray(planes)  # integers stay integers: each channel is converted once, below
    if data.dtype.kind not in "iuf":
        data = data.astype(np.float64)
    roles = tuple(roles)
    if data.ndim != 3:
        raise ValueError(f"planes must be (C, Y, X), got shape {data.shape}")
    if len(roles) != data.shape[0]:
        raise ValueError(
            f"{len(roles)} channel role(s) {list(roles)} for {data.shape[0]} channel(s)"
        )
    if roles == ("heterochromatin",):
        model = "single-channel"
    elif sorted(roles) == ["chromatin", "heterochromatin"]:
        model = "two-channel"
    else:
        raise ValueError(
            f"channel roles {list(roles)} fit no observation model; use ('heterochromatin',) "
            "or one 'chromatin' and one 'heterochromatin' channel"
        )
    auto = isinstance(calibration, str)
    if auto and calibration != "auto":
        raise ValueError(
            f"calibration must be 'auto' or one (offset, scale) per channel, got {calibration!r}"
        )
    if auto:
        cals = tuple(
            auto_calibration(ch, role, phi_max=phi_max)
            for ch, role in zip(data, roles, strict=True)
        )
    else:
        cals = tuple(
            c if isinstance(c, Calibration) else Calibration(offset=c[0], scale=c[1])
            for c in calibration
        )
        if len(cals) != len(roles):
            raise ValueError(f"{len(cals)} calibration pair(s) for {len(roles)} channel(s)")
    # (x - offset) * scale in float64, clipped, a block of rows at a time (so that a float32
    # output never needs a float64 copy of the plane), then stored in ``dtype``
    fields = np.empty((2,) + data.shape[1:], dtype=dtype)
    by_role = dict(zip(roles, zip(data, cals, strict=True), strict=True))
    width = int(np.prod(data.shape[2:], dtype=np.int64))
    rows = data.shape[1] if fields.dtype == np.float64 else max(1, _BLOCK_PX // max(1, width))
    for r0 in range(0, data.shape[1], rows):
        r1 = min(data.shape[1], r0 + rows)
        _fields_into(fields[:, r0:r1], {k: (ch[r0:r1], cal) for k, (ch, cal) in by_role.items()},
                     model, phi_max, clip)
    record: dict[str, Any] = {
        "model": model,
        "phi_max": float(phi_max),
        "channels": [
            {
                "index": i,
                "role": role,
                "offset": cal.offset,
                "scale": cal.scale,
                "source": "auto" if auto else "user",
            }
            for i, (role, cal) in enumerate(zip(roles, cals, strict=True))
        ],
    }
    if auto:
        record["assumption"] = _assumption(model, phi_max)
        record["percentiles"] = list(AUTO_PERCENTILES)
    log.debug("observation model %s, calibration %s", model, record["channels"])
    return fields, record


def rescaled_fields(fields: np.ndarray, model: str, role: ChannelRole, factor: float
                    ) -> np.ndarray:
    """``[phi_h, phi_w]`` fields ``(..., 2, Y, X)`` (unclipped, as the fit holds them) as
    they would be with the ``role`` channel's calibration scale times ``factor``, under the
    observation ``model`` (``"single-channel"`` or ``"two-channel"``).

    A scale multiplies ``intensity - offset``, so it multiplies the field: the heterochromatin
    fraction (one channel, or its channel of two) or the chromatin fraction ``1 - phi_w``.

    >>> f = np.array([[[0.2, 0.6]], [[0.3, 0.3]]])
    >>> rescaled_fields(f, "single-channel", "heterochromatin", 1.25).tolist()
    [[[0.25, 0.75]], [[0.3, 0.3]]]
    >>> rescaled_fields(np.array([[[0.3]], [[0.5]]]), "two-channel", "chromatin", 0.5).tolist()
    [[[0.3]], [[0.75]]]
    """
    f = np.array(fields, dtype=np.float64)
    h, w = f[..., 0, :, :], f[..., 1, :, :]
    if model not in ("single-channel", "two-channel"):
        raise ValueError(f"unknown observation model {model!r}")
    if role == "heterochromatin":
        h *= factor
    elif model == "two-channel" and role == "chromatin":
        np.subtract(1.0, (1.0 - w) * factor, out=w)
    else:
        raise ValueError(f"a {model} model has no {role!r} channel")
    return f
