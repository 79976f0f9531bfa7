"""Two channels brought into register before calibration (``--channel-offset``).

A two-colour image rarely shows both channels on the same pixels: chromatic aberration and
the alignment of the two light paths leave an offset, typically 10–50 nm after correction.
chromarate reads λ from both fields pixel by pixel, so at 15–40 nm pixels an offset of a
fraction of a pixel mixes neighbouring structure into λ (measured: docs/your-own-images.md,
"Two channels out of register"). The offset is a property of the microscope, measured on
beads seen in both channels, not of the sample; give it with ``--channel-offset DY,DX`` (µm)
and the heterochromatin channel is moved back by it. :func:`bead_offset` measures it from an
image of beads in both channels (``chromarate channel-offset BEADS.tif``).

The move is a Fourier shift: the channel's spectrum times a phase ramp. Unlike spline or
linear interpolation it does not smooth, so the noise keeps its spectrum (an interpolated
camera image would look filtered to the noise model, :mod:`pipeline.estimate.noise`). It is
periodic: the rows and columns that leave one edge come back at the other, inside the border
band that no λ is reported in for offsets smaller than the derivative support.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bead_offset", "fourier_shifted", "reapplied", "registered"]

log = logging.getLogger(__name__)


def fourier_shifted(channel: np.ndarray, shift_px: Sequence[float]) -> np.ndarray:
    """``channel`` (Y, X) moved by ``shift_px`` (Y, X) pixels (a point at ``p`` goes to
    ``p + shift``), by a phase ramp on its spectrum; float64.

    >>> a = np.zeros((8, 8)); a[2, 3] = 1.0
    >>> b = fourier_shifted(a, (1, -2))
    >>> [int(v) for v in np.unravel_index(np.argmax(b), b.shape)], round(float(b.max()), 6)
    ([3, 1], 1.0)
    """
    x = np.asarray(channel, np.float64)
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.rfftfreq(x.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * float(shift_px[0]) + fx * float(shift_px[1])))
    return np.fft.irfft2(np.fft.rfft2(x) * ramp, s=x.shape)


def registered(plane: np.ndarray, roles: Sequence[str], settings: Any, pixel_size_um: float
               ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """``plane`` (C, Y, X) with the heterochromatin channel moved back by
    ``settings.channel_offset_um`` (where it shows a point minus where the chromatin channel
    shows it, µm), and the record; ``(plane, None)`` without an offset or with one channel
    (then a warning says it was not applied)."""
    offset = getattr(settings, "channel_offset_um", None)
    if offset is None:
        return plane, None
    if len(roles) != 2:
        log.warning("--channel-offset applies to two channels; this image has one: ignored")
        return plane, None
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError("--channel-offset needs the pixel size (micrometres per pixel)")
    rec = {"offset_um": [float(o) for o in offset],
           "channel": list(roles).index("heterochromatin"),
           "shift_px": [-float(o) / pixel_size_um for o in offset],
           "how": "Fourier shift of the heterochromatin channel",
           "pixel_size_um": float(pixel_size_um)}
    return reapplied(plane, rec), rec


def reapplied(plane: np.ndarray, record: dict[str, Any] | None) -> np.ndarray:
    """``plane`` moved as a :func:`registered` record says (``plane`` itself for ``None``):
    the same move for another reading of the same plane (the calibration check's
    alternative fields)."""
    if record is None:
        return plane
    out = np.array(plane, dtype=np.float64)
    ch = record["channel"]
    out[ch] = fourier_shifted(out[ch], record["shift_px"])
    return out


BEAD_UPSAMPLE = 100
"""Resolution of the bead offset: 1/100 px (phase correlation, upsampled cross-correlation)."""


def bead_offset(planes: np.ndarray, roles: Sequence[str], pixel_size_um: float
                ) -> dict[str, Any]:
    """The offset between the channels of a bead image, for ``--channel-offset``.

    ``planes`` ``(P, 2, Y, X)``: beads (or any structure identical in both channels) seen in
    both. Per plane, the shift that registers the heterochromatin channel onto the chromatin
    channel, by phase correlation (:func:`skimage.registration.phase_cross_correlation`,
    upsampled to 1/:data:`BEAD_UPSAMPLE` px); the offset is its negative (where the
    heterochromatin channel shows a bead minus where the chromatin channel shows it), the
    median over planes, in µm. On a sample instead of beads the two stains differ and the
    peak can sit off the true offset (docs/your-own-images.md).

    >>> yy, xx = np.mgrid[:64, :64]
    >>> bead = lambda y, x: np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
    >>> img = np.stack([bead(30, 30) + bead(12, 40), bead(30.4, 29.8) + bead(12.4, 39.8)])
    >>> out = bead_offset(img[None], ("chromatin", "heterochromatin"), 0.02)
    >>> [round(v, 4) for v in out["offset_um"]], out["option"]
    ([0.008, -0.004], '--channel-offset 0.008,-0.004')
    """
    from skimage.registration import phase_cross_correlation

    planes = np.asarray(planes)
    if planes.ndim != 4 or planes.shape[1] != 2 or len(roles) != 2:
        raise ValueError(f"a bead image needs two channels; got planes of shape {planes.shape}")
    ic, ih = list(roles).index("chromatin"), list(roles).index("heterochromatin")
    shifts = []
    for plane in planes:
        ref = np.asarray(plane[ic], np.float64)
        mov = np.asarray(plane[ih], np.float64)
        est, _, _ = phase_cross_correlation(ref - ref.mean(), mov - mov.mean(),
                                            upsample_factor=BEAD_UPSAMPLE, normalization=None)
        shifts.append(-np.asarray(est, float))
    px = np.median(np.array(shifts), axis=0)
    um = [round(float(v) * pixel_size_um, 6) for v in px]
    spread = (np.abs(np.array(shifts) - px).max(axis=0) if len(shifts) > 1 else np.zeros(2))
    return {"offset_px": [float(v) for v in px], "offset_um": um,
            "planes": len(shifts), "max_deviation_px": [float(v) for v in spread],
            "option": f"--channel-offset {um[0]:g},{um[1]:g}"}
