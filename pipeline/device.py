"""Device selection: the one place that decides where tensors live."""

from __future__ import annotations

import logging
from typing import Literal

__all__ = ["resolve_device", "DeviceName"]

log = logging.getLogger(__name__)

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(device: str | None = None):
    """Return a ``torch.device`` for ``device`` ("auto", "cpu", "cuda", "cuda:1", or None).

    ``None`` and ``"auto"`` pick CUDA when it is available, else the CPU. Asking for CUDA on a
    machine without it raises a clear error instead of failing later inside a kernel.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} was requested but CUDA is not available here; "
            "use --device cpu or --device auto"
        )
    return dev
