"""TIFF input, one module per concern; this module gathers their public names.

=====================================  ===================================================
:mod:`pipeline.io.discover`            the TIFF files of a folder (:func:`discover_tiffs`)
:mod:`pipeline.io.metadata`            axes, pixel size and Z step from OME-XML (parsed by
                                       tifffile), ImageJ or TIFF tags; units; :class:`ImageInfo`
:mod:`pipeline.io.validate`            :func:`inspect_tiff`: damage detection and refusals
:mod:`pipeline.io.read`                :func:`read_planes`: lazy ``(P, C, Y, X)`` over tifffile
:mod:`pipeline.io.write`               :func:`write_tiff`: OME-TIFF or ImageJ hyperstack
=====================================  ===================================================

Supported layouts (``series.axes`` after normalisation) are ``YX``, ``CYX``, ``ZYX``,
``TYX``, ``ZCYX`` and ``TCYX``; ``CZYX``/``CTYX`` (common in OME-TIFF) are read too. Every
other file is refused with an :class:`InputError` that names the file and says what to do.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "cell.ome.tif"
>>> _ = write_tiff(path, np.zeros((2, 8, 8), np.uint16), axes="CYX", pixel_size_um=0.02)
>>> info = inspect_tiff(path)
>>> info.axes, info.n_channels, info.pixel_size_um, info.pixel_size_source
('CYX', 2, 0.02, 'ome')
>>> read_planes(path, info).shape
(1, 2, 8, 8)
"""

from __future__ import annotations

from pipeline.errors import InputError  # defined with its siblings; re-exported here
from pipeline.io.discover import discover_tiffs
from pipeline.io.metadata import SUPPORTED_AXES, ImageInfo, PixelSizeSource
from pipeline.io.read import read_planes
from pipeline.io.validate import inspect_tiff
from pipeline.io.write import write_tiff

__all__ = [
    "SUPPORTED_AXES",
    "ImageInfo",
    "InputError",
    "PixelSizeSource",
    "discover_tiffs",
    "inspect_tiff",
    "read_planes",
    "write_tiff",
]
