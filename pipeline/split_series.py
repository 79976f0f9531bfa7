"""A file of several image series (a multi-position OME-TIFF), split into one TIFF per series.

chromarate reads one image per file: the first series of a file that holds several (it flags
the image ``series-skipped``). :func:`split_series` writes every series as
``<stem>_s<k>.ome.tif`` with its own pixel size, Z step and channel names (OME ``Image``
``k``), so that each position is analysed. The input is only read; each output is written
atomically; a series that cannot be written (a colour thumbnail, no pixel size) is refused
with its reason, and the others are still written.

Examples
--------
>>> import tempfile, numpy as np, tifffile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> with tifffile.TiffWriter(d / "pos.ome.tif", ome=True) as tw:
...     for k in range(2):
...         tw.write(np.full((8, 8), k, np.uint16), metadata={
...             "axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02})
>>> out = split_series(d / "pos.ome.tif", d / "split")
>>> [p.name for p in out.written], out.refused
(['pos_s0.ome.tif', 'pos_s1.ome.tif'], [])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import tifffile

from pipeline.errors import InputError
from pipeline.io import write_tiff
from pipeline.io.metadata import names_every_channel, normalise_axes, pixel_size
from pipeline.io.ome_xml import (
    ome_channel_names,
    ome_images_pixels,
    ome_pixels_size,
    ome_z_step,
)
from pipeline.merge_channels import split_name, writable

__all__ = ["SplitResult", "split_series"]

@dataclass
class SplitResult:
    """The files written (one per series) and the series refused, one line each."""

    written: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def split_series(path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 pixel_size_um: float | None = None) -> SplitResult:
    """Write each image series of ``path`` to ``out_dir`` as ``<stem>_s<k>.ome.tif``.

    Raises
    ------
    InputError
        If the file holds one series only (nothing to split), is not a readable TIFF, or
        ``out_dir`` is the file's own folder (the parts would be read next to the whole).
    """
    path, out_dir = Path(path), Path(out_dir)
    if out_dir.resolve() == path.parent.resolve():
        raise InputError(out_dir, "the output folder is the input file's folder",
                         "Write the series to another folder, and run on that one")
    stem, _ = split_name(path)
    result = SplitResult()
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise InputError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})",
                         "Check that it is a complete TIFF") from exc
    with tif:
        if len(tif.series) < 2:
            raise InputError(path, "it holds one image series: nothing to split",
                             "Run chromarate on it as it is")
        try:
            ome = ome_images_pixels(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else []
        except ValueError:
            ome = []
        file_px = None if ome else pixel_size(tif)
        out_dir.mkdir(parents=True, exist_ok=True)
        for k, series in enumerate(tif.series):
            pixels = ome[k] if k < len(ome) else {}
            try:
                axes, _, _ = normalise_axes(path, series.axes, tuple(series.shape))
                if pixel_size_um is not None:
                    size = pixel_size_um
                elif pixels:  # this series' own OME Image
                    found = ome_pixels_size(pixels, path)
                    size = found[0] if found else None
                else:  # ImageJ or TIFF tags: the file's
                    size = file_px[0][0] if file_px else None
                if size is None:
                    raise InputError(path, f"series {k} has no pixel size in its metadata",
                                     "Pass --pixel-size in micrometres")
                data = writable(series.asarray())
                names = ome_channel_names(pixels) if pixels else ()
                n_c = series.shape[axes.index("C")] if "C" in axes else 1
                named = names_every_channel(names, n_c) if n_c > 1 else None
                z = ome_z_step(pixels) if "Z" in axes else None
                result.written.append(write_tiff(
                    out_dir / f"{stem}_s{k}.ome.tif", data, axes=axes,
                    pixel_size_um=float(size), z_step_um=z, channel_names=named))
            except InputError as exc:
                result.refused.append(f"series {k} ({' x '.join(map(str, series.shape))} "
                                      f"{series.axes}): {exc.reason}")
    return result
