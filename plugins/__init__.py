"""napari plugin for chromarate: a reader, the inspect and run widgets, and sample data.

The manifest is ``plugins/napari.yaml`` (npe2), registered under the ``napari.manifest``
entry point. Modules split in two:

- plain (no napari, no Qt): :mod:`plugins.layers` (layer data from stores and TIFFs),
  :mod:`plugins.reader`, :mod:`plugins.summary` (masking and per-nucleus summaries),
  :mod:`plugins.inspect_data` (the inspect widget's arrays and worker-thread summaries),
  :mod:`plugins.runner` (settings, and the Prefect flow's run as events), :mod:`plugins.sample`,
  :mod:`plugins.canvas` (adding layers, canvas overlays; napari imported inside functions);
- GUI (the ``napari`` extra; napari imported inside functions): :mod:`plugins.inspect_widget`
  (with :mod:`plugins.inspect_overlay` and :mod:`plugins.inspect_selection`),
  :mod:`plugins.run_widget` (with :mod:`plugins.run_fields`), :mod:`plugins.view`
  (``chromarate view``).

``plugins`` has no import cycles (``lint-imports``): :mod:`plugins.view` docks the widgets, and
what both need is in :mod:`plugins.canvas`.
"""

from plugins.layers import robust_limits, store_layers, tiff_layers
from plugins.reader import napari_get_reader, read_path
from plugins.runner import build_settings, run_folder
from plugins.summary import label_summaries, visible_mask, write_summaries_csv

__all__ = [
    "build_settings",
    "label_summaries",
    "napari_get_reader",
    "read_path",
    "robust_limits",
    "run_folder",
    "store_layers",
    "tiff_layers",
    "visible_mask",
    "write_summaries_csv",
]
