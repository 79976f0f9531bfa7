"""chromarate's pure library: numpy, scipy, dask, torch, tifffile, zarr, scikit-image, pandas.

It never imports prefect, napari or Qt (checked by import-linter, see pyproject.toml).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chromarate")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
