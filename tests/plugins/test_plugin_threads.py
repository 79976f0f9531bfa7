"""The inspect widget's worker threads compute dask arrays without dask's global callbacks."""

import numpy as np


def test_materialize_leaves_global_dask_callbacks_alone() -> None:
    """napari registers its opportunistic cache as a global dask callback; dask swaps that set
    without a lock, so a worker computing with it raced the GUI thread (a KeyError in
    dask/cache.py, seen once in a full test run). ``materialize`` computes with none."""
    import dask.array as da
    from dask.callbacks import Callback

    from plugins.inspect_widget import materialize

    x = da.ones((8, 8), chunks=4) * 2
    seen: list = []
    with Callback(pretask=lambda key, dsk, state: seen.append(key)):
        before = set(Callback.active)
        out = materialize(x)
        assert set(Callback.active) == before
    assert seen == [] and out.sum() == 128 and isinstance(out, np.ndarray)
    assert materialize(None) is None and materialize([1, 2]).tolist() == [1, 2]
    with Callback(pretask=lambda key, dsk, state: seen.append(key)):
        np.asarray(x)  # what the worker did before: the global callback runs
    assert seen
