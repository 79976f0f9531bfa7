"""The command line's text for the settings that are not a plain number or word:
``--calibration`` pairs, ``--channel-offset`` and ``--channels`` (the CLI, the napari run
widget and the stress benchmarks parse with these; :class:`pipeline.config.Settings` checks
the values)."""

from __future__ import annotations

import math
from typing import Literal

from .channels import IGNORE, USES, ChannelUse
from .config import Calibration

__all__ = ["parse_calibration", "parse_channels", "parse_offset"]


def parse_calibration(text: str | None) -> tuple[Calibration, ...] | Literal["auto", "image"]:
    """Parse ``"OFFSET:SCALE[,OFFSET:SCALE]"`` (or ``"auto"``, ``"image"``).

    >>> parse_calibration("100:0.001,50:0.002")[1].offset
    50.0
    >>> parse_calibration("image"), parse_calibration(None)
    ('image', 'auto')
    """
    if text is None or text.strip().lower() == "auto":
        return "auto"
    if text.strip().lower() == "image":
        return "image"
    pairs = []
    for item in text.split(","):
        try:
            offset, scale = item.split(":")
            pairs.append(Calibration(offset=float(offset), scale=float(scale)))
        except ValueError as exc:
            raise ValueError(
                f"calibration {item!r} is not OFFSET:SCALE with a positive scale "
                f"(in {text!r})"
            ) from exc
    return tuple(pairs)


def parse_offset(text: str | None) -> tuple[float, float] | None:
    """Parse ``"DY,DX"`` (µm) for ``--channel-offset``.

    >>> parse_offset("0.012,-0.004"), parse_offset(None)
    ((0.012, -0.004), None)
    """
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        dy, dx = (float(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"channel offset {text!r} is not DY,DX in micrometres, e.g. "
                         "0.012,-0.004") from exc
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ValueError(f"channel offset {text!r} is not finite")
    return dy, dx


def parse_channels(text: str | None) -> tuple[ChannelUse, ...] | None:
    """Parse ``"chromatin,heterochromatin"`` (one word per channel: a role or ``ignore``) into
    roles (None means from the file's channel names or the channel count).

    >>> parse_channels("chromatin, heterochromatin,Ignore")
    ('chromatin', 'heterochromatin', 'ignore')
    """
    if text is None or text.strip().lower() == "auto":
        return None
    roles = tuple(r.strip().lower() for r in text.split(","))
    for r in roles:
        if r not in USES:
            raise ValueError(f"unknown channel role {r!r} in {text!r}; use chromatin, "
                             f"heterochromatin or {IGNORE}")
    return roles  # type: ignore[return-value]
