"""The user's own nuclei: an integer label image per input, found by file stem (Cellpose's
``_cp_masks`` and ``_masks`` suffixes are understood) and checked against the image.

>>> "_cp_masks" in LABEL_SUFFIXES
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABEL_SUFFIXES", "find_user_labels", "read_user_labels"]

LABEL_SUFFIXES = ("", "_cp_masks", "_masks", "_labels", "_label")
"""Accepted label-file names: ``<stem><suffix>.<ext>`` (Cellpose writes ``_cp_masks``)."""
_LABEL_EXTS = (".tif", ".tiff", ".png", ".npy")
_HINT_LABELS = ("Save one integer label image per input (0 background, 1..n nuclei), with the "
                "input's stem as its name, e.g. from Cellpose or StarDist")


def find_user_labels(image: str | Path, folder: str | Path) -> Path:
    """The label file for ``image`` in ``folder``: ``<stem><suffix>.<ext>``.

    Suffixes are :data:`LABEL_SUFFIXES`; extensions ``.tif``, ``.tiff``, ``.png``, ``.npy``.
    The image itself never counts (labels may sit beside the images, as ``_masks`` files).
    Raises :class:`~pipeline.io.InputError` naming the image when none or several match.
    """
    from .io import InputError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "the --nuclei folder does not exist", "Check the path")
    name = Path(image).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    me = Path(image).resolve()
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.resolve() != me and any(
        p.name.lower() == f"{name}{s}{e}".lower() for s in LABEL_SUFFIXES for e in _LABEL_EXTS))
    if not found:
        raise InputError(image, f"no label image for it in {folder} (looked for {name}.tif, "
                         f"{name}_cp_masks.png, ... )", _HINT_LABELS)
    if len(found) > 1:
        raise InputError(image, f"several label images match it in {folder}: "
                         f"{', '.join(p.name for p in found)}", "Keep only one")
    return found[0]


def read_user_labels(path: str | Path, shape_yx: tuple[int, int], n_planes: int,
                     stack: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and check a user label image: ``(P, Y, X)`` int32 and a record.

    The image must hold integers ≥ 0 (0 background), with the input's ``(Y, X)`` shape, or
    ``(P, Y, X)`` for a stack of ``P`` planes (a single ``(Y, X)`` image is refused for a
    stack: nothing is guessed). A mask of one value (0 and 255, say) is a binary mask: its
    connected components become the nuclei, and the record says so.
    """
    from skimage.measure import label

    from .io import InputError

    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".png":
            import imageio.v3 as iio

            data = iio.imread(path)
        else:
            import tifffile

            data = tifffile.imread(path)
    except Exception as exc:
        raise InputError(path, f"the label image cannot be read ({type(exc).__name__}: {exc})",
                         _HINT_LABELS) from exc
    data = np.asarray(data)
    if data.dtype.kind not in "iub":
        raise InputError(path, f"the label image holds {data.dtype} values, not integers",
                         "Save labels as an integer image (uint16 or int32), 0 for background")
    while data.ndim > 2 and data.shape[0] == 1 and not (stack and data.ndim == 3):
        data = data[0]
    want = (n_planes, *shape_yx) if stack else tuple(shape_yx)
    if data.shape != want:
        what = f"(Z, Y, X) = {want}" if stack else f"(Y, X) = {want}"
        raise InputError(path, f"the label image has shape {data.shape}; the image needs "
                         f"{what}", "Save labels of the image's own size (one plane per Z "
                         "plane for a stack)")
    if data.dtype.kind == "i" and data.size and int(data.min()) < 0:
        raise InputError(path, "the label image holds negative values",
                         "Use 0 for background and 1..n for nuclei")
    if data.size and int(data.max()) >= 2**31:
        raise InputError(path, f"label value {int(data.max())} is too large",
                         "Renumber the labels from 1")
    planes = data.reshape(-1, *shape_yx)
    record: dict[str, Any] = {"mode": "user", "path": str(path)}
    values = np.unique(planes)
    if data.dtype == bool or len(values[values > 0]) == 1:
        planes = np.stack([label(p > 0) for p in planes])
        record["binary"] = True
        record["note"] = (f"{path.name} holds one value: a binary mask, its connected "
                          "components are the nuclei")
    return planes.astype(np.int32), record
