"""The stages' own zarr stores in a run's work folder (``OUT/.chromarate/work/<image>/``):
built under a temporary name and moved into place whole, so a killed stage leaves nothing a
re-run could mistake for finished work; each holds its arrays and a JSON ``record``.

>>> import tempfile, numpy as np
>>> d = Path(tempfile.mkdtemp())
>>> with stage_store(d / "s.zarr", {"a": ((2, 4, 4), np.float32)}) as (root, rec):
...     root["a"][1] = 1.0
...     rec["n"] = 2
>>> stage_record(d / "s.zarr"), float(zarr.open_group(d / "s.zarr")["a"][1].sum())
({'n': 2}, 16.0)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr

from .atomic import atomic_dir

__all__ = ["save_stage", "stage_record", "stage_store"]


@contextlib.contextmanager
def stage_store(path: Path, arrays: dict[str, tuple[tuple[int, ...], Any]]
                 ) -> Iterator[tuple[zarr.Group, dict[str, Any]]]:
    """A stage's zarr store, built under a temporary name and moved into place on success:
    yields the group, with empty arrays of the given ``{name: (shape, dtype)}`` (chunked by
    plane, at most 1024 px a side) for the caller to fill plane by plane, and a dict whose
    content becomes the store's ``record``."""
    with atomic_dir(path) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        for name, (shape, dtype) in arrays.items():
            chunks = (1,) * (len(shape) - 2) + tuple(min(n, 1024) for n in shape[-2:])
            root.create_array(name, shape=shape, dtype=dtype, chunks=chunks)
        record: dict[str, Any] = {}
        yield root, record
        root.attrs["record"] = json.loads(json.dumps(record, default=float))


def save_stage(path: Path, arrays: dict[str, Any], attrs: dict[str, Any]) -> Path:
    """Write whole arrays and a record as a stage store (:func:`stage_store`)."""
    import dask.array as da

    with stage_store(path, {k: (a.shape, a.dtype) for k, a in arrays.items()}) as (root, rec):
        for name, arr in arrays.items():
            z = root[name]
            # explicit, empty callbacks: dask swaps its global callback set without a lock, and
            # in napari (the run widget) that set holds napari's cache, which must not run in
            # two threads at once (plugins.inspect_widget.materialize)
            da.store(da.asarray(arr).rechunk(z.chunks), z, lock=False, scheduler="threads",
                     callbacks=())
        rec.update(attrs)
    return path


def stage_record(path: Path) -> dict[str, Any]:
    """The record a stage store was written with."""
    return dict(zarr.open_group(path, mode="r").attrs["record"])
