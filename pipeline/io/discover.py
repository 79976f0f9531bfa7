"""Discovery: the TIFF files of an input folder.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> for name in ("b.TIF", "a.tif", "notes.txt", ".a.tif"):
...     _ = (folder / name).write_bytes(b"")
>>> [p.name for p in discover_tiffs(folder)]
['a.tif', 'b.TIF']
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import InputError

__all__ = ["TIFF_SUFFIXES", "discover_tiffs"]

TIFF_SUFFIXES = (".tif", ".tiff")
"""File suffixes read as TIFF (compared in lower case)."""


def discover_tiffs(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """The ``.tif``/``.tiff`` files (any case) in ``folder``, sorted.

    Other files, and hidden ones (``.name``: partial outputs, macOS ``._`` files), are ignored.

    Raises
    ------
    InputError
        If ``folder`` is not a directory or holds no TIFF.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder", "Check the path given as input")
    entries = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(
        p
        for p in entries
        if p.suffix.lower() in TIFF_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        where = "or its subfolders " if recursive else ""
        raise InputError(
            folder,
            f"the folder {where}holds no .tif or .tiff file",
            "Point to the folder with the images" + ("" if recursive else " or pass --recursive"),
        )
    return found
