"""Channels saved as separate files, merged into one two-channel TIFF per image.

Many microscopes and export scripts write each channel to a file of its own
(``cell1_c0.tif``, ``cell1_c1.tif``). chromarate reads one image per file, so such a folder
would be analysed as one-channel images, the chromatin stain's among them. :func:`merge_folder`
pairs the files by a suffix per channel and writes ``<base>.ome.tif`` with a C axis, in the
order of the suffixes (chromatin first, as ``--channels`` reads two channels by default), each
channel named after its suffix.
Inputs are read only; each output is written atomically; nothing is written for a pair that
does not match (shape, planes, pixel size), and the reason names both files.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from pipeline.io import write_tiff, inspect_tiff
>>> d = Path(tempfile.mkdtemp())
>>> for k in (0, 1):
...     _ = write_tiff(d / f"cell_c{k}.tif", np.full((8, 8), k, np.uint16), axes="YX",
...                    pixel_size_um=0.02)
>>> out = merge_folder(d, ("_c0", "_c1"), d / "merged")
>>> [p.name for p in out.written], out.unpaired, out.refused
(['cell.ome.tif'], [], [])
>>> inspect_tiff(out.written[0]).axes
'CYX'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from pipeline.io import discover_tiffs, inspect_tiff, read_planes, write_tiff

__all__ = ["MergeResult", "channel_labels", "merge_folder", "merge_pair", "pair_files",
           "split_name", "writable"]

_WRITABLE = (np.uint8, np.uint16, np.float32)


def writable(data: np.ndarray) -> np.ndarray:
    """``data`` in a type :func:`~pipeline.io.write_tiff` writes: uint8, uint16 and float32
    as they are, anything else as float32 (exact for 16-bit integers; other values rounded).

    >>> writable(np.array([1], np.int16)).dtype, writable(np.array([1], np.uint16)).dtype
    (dtype('float32'), dtype('uint16'))
    """
    return data if data.dtype in _WRITABLE else data.astype(np.float32)


@dataclass
class MergeResult:
    """What :func:`merge_folder` did: files written, files without a partner, pairs refused
    (one line each, naming the files)."""

    written: list[Path] = field(default_factory=list)
    unpaired: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def split_name(path: Path) -> tuple[str, str]:
    """``(stem, extension)`` with a double extension such as ``.ome.tif`` kept whole.

    >>> split_name(Path("cell 1.OME.TIF"))
    ('cell 1', '.OME.TIF')
    """
    name = path.name
    low = name.lower()
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if low.endswith(ext):
            return name[: -len(ext)], name[-len(ext):]
    return path.stem, path.suffix


def pair_files(files: list[Path], suffixes: tuple[str, ...]
               ) -> tuple[dict[str, list[Path]], list[Path]]:
    """Group ``files`` by the base name left after one of ``suffixes``: ``{base: [file per
    suffix, in order]}`` for complete groups, and the files of incomplete groups or of no
    suffix.

    >>> groups, rest = pair_files([Path("a_c0.tif"), Path("a_c1.tif"), Path("b_c0.tif"),
    ...                           Path("notes.tif")], ("_c0", "_c1"))
    >>> {k: [p.name for p in v] for k, v in groups.items()}, [p.name for p in rest]
    ({'a': ['a_c0.tif', 'a_c1.tif']}, ['b_c0.tif', 'notes.tif'])
    """
    found: dict[str, dict[int, Path]] = {}
    rest: list[Path] = []
    for path in files:
        stem, _ = split_name(path)
        hit = next((k for k, s in enumerate(suffixes) if stem.endswith(s)), None)
        if hit is None:
            rest.append(path)
            continue
        found.setdefault(stem[: len(stem) - len(suffixes[hit])], {})[hit] = path
    groups = {}
    for base, members in sorted(found.items()):
        if len(members) == len(suffixes) and base:
            groups[base] = [members[k] for k in range(len(suffixes))]
        else:
            rest.extend(members.values())
    return groups, sorted(rest)


def merge_pair(paths: list[Path], out: Path, *, pixel_size_um: float | None = None,
               names: Sequence[str] | None = None) -> Path:
    """Write the one-channel images ``paths`` as the channels of ``out`` (OME-TIFF), named
    ``names`` (OME ``Channel Name``) when given.

    Raises
    ------
    InputError
        Naming the files, if one is not a single-channel image, or their sizes, planes or
        pixel sizes differ (by more than 1 %).
    """
    infos = [inspect_tiff(p, pixel_size_um=pixel_size_um) for p in paths]
    files = " and ".join(p.name for p in paths)
    for p, info in zip(paths, infos, strict=True):
        if info.n_channels != 1:
            raise InputError(p, f"it has {info.n_channels} channels; merging takes one "
                             "channel per file", "Merge only one-channel files")
    layouts = {(i.axes, i.shape, i.plane_axis) for i in infos}
    if len(layouts) != 1:
        raise InputError(paths[0], f"{files} differ in layout: " + "; ".join(
            f"{p.name}: axes {i.axes}, shape {i.shape}" for p, i in zip(paths, infos,
                                                                      strict=True)),
                         "The channels of one image must have the same size and planes")
    sizes = [i.pixel_size_um for i in infos]
    if max(sizes) > 1.01 * min(sizes):
        raise InputError(paths[0], f"{files} differ in pixel size ("
                         + ", ".join(f"{s:.6g}" for s in sizes) + " µm)",
                         "The channels of one image must share the pixel size")
    planes = [np.asarray(read_planes(p, i).compute())[:, 0] for p, i in zip(paths, infos,
                                                                          strict=True)]
    data = np.stack(planes, axis=1)  # (P, C, Y, X)
    data = writable(data)
    info = infos[0]
    if info.plane_axis is None:
        data, axes = data[0], "CYX"
    else:
        axes = f"{info.plane_axis}CYX"
    z = info.z_step_um if info.plane_axis == "Z" else None
    return write_tiff(out, data, axes=axes, pixel_size_um=float(sizes[0]), z_step_um=z,
                      channel_names=names)


def channel_labels(suffixes: Sequence[str]) -> list[str]:
    """The channels' names in a merged file: the suffixes without leading separators, so
    that a suffix that names the stain (``_DAPI``, ``_H3K9me3``) names the channel, and the
    run reads the roles from it (docs/your-own-images.md, "Which channel is which").

    >>> channel_labels(["_c0", "-DAPI", ".H3K9me3"])
    ['c0', 'DAPI', 'H3K9me3']
    """
    return [s.lstrip("_-. ") or s for s in suffixes]


def merge_folder(folder: str | os.PathLike[str], suffixes: tuple[str, ...],
                 out_dir: str | os.PathLike[str], *,
                 pixel_size_um: float | None = None) -> MergeResult:
    """Merge every complete group of ``suffixes`` in ``folder`` into ``out_dir``.

    Raises
    ------
    InputError
        If fewer than two suffixes are given, or ``out_dir`` is ``folder`` (the merged files
        would be read again as inputs next to their channels).
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if len(suffixes) < 2 or len(set(suffixes)) != len(suffixes) or not all(suffixes):
        raise InputError(folder, f"suffixes {list(suffixes)!r}: give two or more, distinct",
                         "e.g. --suffixes _c0,_c1 (chromatin first)")
    if out_dir.resolve() == folder.resolve():
        raise InputError(out_dir, "the output folder is the input folder",
                         "Write the merged images to another folder, and run on that one")
    groups, rest = pair_files(discover_tiffs(folder), tuple(suffixes))
    result = MergeResult(unpaired=rest)
    out_dir.mkdir(parents=True, exist_ok=True)
    for base, paths in groups.items():
        try:
            result.written.append(merge_pair(paths, out_dir / f"{base}.ome.tif",
                                             pixel_size_um=pixel_size_um,
                                             names=channel_labels(suffixes)))
        except InputError as exc:
            result.refused.append(str(exc))
    return result
