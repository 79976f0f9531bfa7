"""The npe2 reader: a results folder, one ``<stem>.ome.zarr``, or a folder of TIFFs.

Examples
--------
>>> napari_get_reader("notes.txt") is None
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from plugins.layers import (
    LayerData,
    find_stores,
    is_result_store,
    is_results_folder,
    is_tiff_folder,
    store_layers,
    tiff_layers,
)

__all__ = ["napari_get_reader", "read_path"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _readable(path: Path) -> bool:
    return is_result_store(path) or is_results_folder(path) or is_tiff_folder(path)


def napari_get_reader(path: PathLike | list[PathLike]) -> Callable[..., list[LayerData]] | None:
    """Return :func:`read_path` if chromarate can open ``path`` (or every path of a list).

    Parameters
    ----------
    path : path or list of paths
        What the user dropped or opened.

    Returns
    -------
    callable or None
        None for anything else, so that other readers (napari-ome-zarr) get a chance.
    """
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    if paths and all(_readable(p) for p in paths):
        return read_path
    return None


def read_path(path: PathLike | list[PathLike]) -> list[LayerData]:
    """Layers for a results folder, a store, a TIFF folder, or a list of those.

    In a results folder every store is read; only the first one's layers start visible (the
    others are listed, hidden, so that images do not sit on top of each other). In a TIFF
    folder each readable file gives its raw channels; unreadable files are named in a
    warning and skipped.

    Raises
    ------
    ValueError
        If nothing in ``path`` could be read (the message names each file and reason).
    """
    if isinstance(path, list):
        return [layer for p in path for layer in read_path(p)]
    path = Path(path)
    if is_result_store(path):
        return store_layers(path)
    if is_results_folder(path):
        layers: list[LayerData] = []
        for i, store in enumerate(find_stores(path)):
            layers += store_layers(store, visible=i == 0)
        return layers
    if is_tiff_folder(path):
        from pipeline.io import InputError, discover_tiffs

        layers, problems = [], []
        for tif in discover_tiffs(path):
            try:
                layers += tiff_layers(tif, visible=not layers)
            except (InputError, ValueError) as exc:
                problems.append(str(exc))
        for problem in problems:
            log.warning("chromarate reader skipped: %s", problem)
        if not layers:
            raise ValueError(f"no readable TIFF in {path}: " + "; ".join(problems))
        return layers
    raise ValueError(f"{path} is not a chromarate results folder, store or TIFF folder")
