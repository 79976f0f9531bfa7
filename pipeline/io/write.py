"""Writing TIFFs: OME-TIFF or ImageJ hyperstacks that :func:`~pipeline.io.inspect_tiff` reads back.

Used by the simulator, the tests and the benchmarks to make inputs; chromarate's results are
OME-Zarr (:mod:`pipeline.io.omezarr`). Writes are atomic (:func:`pipeline.io.atomic.atomic_file`).

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = write_tiff(Path(tempfile.mkdtemp()) / "cell.tif", np.zeros((2, 8, 8), np.uint16),
...                   axes="CYX", pixel_size_um=0.02, metadata="imagej")
>>> path.name
'cell.tif'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from pipeline.io.atomic import atomic_file
from pipeline.io.metadata import SUPPORTED_AXES

__all__ = ["write_tiff"]


def write_tiff(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    axes: str,
    pixel_size_um: float,
    metadata: Literal["ome", "imagej"] = "ome",
    compression: str | None = None,
    z_step_um: float | None = None,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Write ``data`` (uint8, uint16 or float32) as OME-TIFF or an ImageJ hyperstack.

    Parameters
    ----------
    path : path
        Destination; written atomically.
    data : ndarray
        The pixels, laid out as ``axes``.
    axes : str
        One of :data:`SUPPORTED_AXES` (ImageJ needs Z/T before C).
    pixel_size_um : float
        Stored as OME ``PhysicalSizeX/Y`` in µm, or as ImageJ resolution with ``unit=um``.
    metadata : {"ome", "imagej"}
        Which metadata convention to write.
    compression : str, optional
        A tifffile compression name, e.g. ``"zlib"``.
    z_step_um : float, optional
        Z spacing, stored as OME ``PhysicalSizeZ`` or ImageJ ``spacing``.
    channel_names : sequence of str, optional
        One name per channel (OME ``Channel Name``; ImageJ ``Labels``, for CYX only).
    """
    data = np.asarray(data)
    axes = axes.upper()
    if axes not in SUPPORTED_AXES or len(axes) != data.ndim:
        raise ValueError(f"axes {axes!r} do not describe data of shape {data.shape}")
    if data.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"write uint8, uint16 or float32 data, not {data.dtype}; cast it first")
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    kwargs: dict[str, Any] = {"compression": compression}
    if metadata == "ome":
        kwargs.update(
            ome=True,
            metadata={
                "axes": axes,
                "PhysicalSizeX": pixel_size_um,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": pixel_size_um,
                "PhysicalSizeYUnit": "µm",
                **({"PhysicalSizeZ": z_step_um, "PhysicalSizeZUnit": "µm"}
                   if z_step_um else {}),
                **({"Channel": {"Name": list(channel_names)}} if channel_names else {}),
            },
        )
    elif metadata == "imagej":
        if axes.startswith("C") and len(axes) == 4:
            raise ValueError(f"ImageJ hyperstacks need Z/T before C, got {axes!r}")
        kwargs.update(
            imagej=True,
            resolution=(1 / pixel_size_um, 1 / pixel_size_um),
            metadata={"axes": axes, "unit": "um",
                      **({"spacing": z_step_um} if z_step_um else {}),
                      **({"Labels": list(channel_names)} if channel_names and axes == "CYX"
                         else {})},
        )
    else:
        raise ValueError(f"metadata must be 'ome' or 'imagej', got {metadata!r}")
    path = Path(path)
    with atomic_file(path) as tmp:
        tifffile.imwrite(tmp, data, **kwargs)
    return path
