"""The run dock widget: choose a folder and settings, run in a worker thread, open the results.

The work is :func:`plugins.runner.run_folder`, the Prefect flow of ``chromarate run``, driven by
a napari ``thread_worker`` (``create_worker``), so the GUI thread never blocks. Progress shows
in the widget and in napari's activity dock (``napari.utils.progress``); errors become
notifications.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from pipeline.config import Settings
from plugins.runner import (
    ENSEMBLE_SECTION,
    build_settings,
    calibration_text,
    config_fields,
    default_out_dir,
    run_folder,
)

if TYPE_CHECKING:
    import napari

__all__ = ["RunWidget"]


def _path_or_none(value: Any) -> Path | None:
    text = str(value or "").strip()
    return None if text in ("", ".") else Path(text)


class RunWidget(Container):
    """Dock widget: run chromarate on a folder of TIFFs and open the results.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._stop = threading.Event()
        self._progress: Any = None
        self.worker: Any = None
        self.last_result: dict[str, Any] | None = None
        self.folder = FileEdit(label="TIFF folder", mode="d")
        self.out = FileEdit(label="results (optional)", mode="d")
        defaults = Settings()  # the one set of defaults (pipeline.config)
        self.method = ComboBox(label="method", choices=["neural", "closed-form"],
                               value=defaults.method)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"],
                               value=defaults.device)
        self.ensemble = SpinBox(label="ensemble size",
                                value=getattr(defaults, ENSEMBLE_SECTION).ensemble_size,
                                min=2, max=64, step=2, tooltip="noise-resampled members per "
                                "tile (even); their spread gives λ std")
        self.tile = SpinBox(label="tile size (px)", value=defaults.run.tile_px, min=16,
                            max=16384, step=64, tooltip="side of the tiles fitted one at a time")
        self.calibration = LineEdit(label="calibration",
                                    value=calibration_text(defaults.calibration),
                                    tooltip="as --calibration: a mode (e.g. image, auto) or "
                                    "OFFSET:SCALE[,OFFSET:SCALE]")
        self.config = FileEdit(label="settings file (optional)", mode="r",
                               filter="*.toml *.yaml *.yml")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.bar = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(label="status", value="idle")
        self.extend([
            self.folder, self.out, self.method, self.device, self.ensemble, self.tile,
            self.calibration, self.config, self.run_button, self.cancel_button, self.bar,
            self.status,
        ])
        self.config.changed.connect(self._load_config)
        self.run_button.changed.connect(lambda *_: self.start())
        self.cancel_button.changed.connect(lambda *_: self.cancel())

    def _load_config(self, *_: Any) -> None:
        """Show the values a chosen settings file sets (the fields then override it)."""
        from napari.utils.notifications import show_error

        try:
            found = config_fields(_path_or_none(self.config.value))
        except ValueError as exc:
            show_error(f"chromarate: cannot read the settings file: {exc}")
            return
        widgets = {"method": self.method, "device": self.device, "ensemble_size": self.ensemble,
                   "tile_size_px": self.tile, "calibration": self.calibration}
        for key, value in found.items():
            widgets[key].value = value

    def start(self) -> Any:
        """Validate the fields and start the run; returns the worker, or None on bad input."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        folder = _path_or_none(self.folder.value)
        if folder is None or not folder.exists():
            show_error(f"chromarate: choose a folder of TIFFs (got {str(folder or '')!r})")
            return None
        try:
            settings = build_settings(
                method=self.method.value,
                device=self.device.value,
                ensemble_size=self.ensemble.value or None,
                tile_size_px=self.tile.value or None,
                calibration=self.calibration.value,
                config=_path_or_none(self.config.value),
            )
        except ValueError as exc:
            show_error(f"chromarate: bad settings: {exc}")
            return None
        out = _path_or_none(self.out.value) or default_out_dir(folder)
        self._stop.clear()
        worker = create_worker(
            run_folder, folder, out, settings, should_stop=self._stop.is_set,
            _start_thread=False,
            _connect={"yielded": self._on_event, "errored": self._on_error,
                      "finished": self._on_finished},
        )
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f"starting: {folder} → {out}"
        self.last_result = None
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Start nothing new; the stage running ends, finished stores stay, no partial one."""
        self._stop.set()
        self.status.value = "cancelling…"

    def _on_event(self, event: dict[str, Any]) -> None:
        from napari.utils import progress

        kind = event["event"]
        total = event.get("total", self.bar.max)
        text = None
        if kind == "starting":
            self.bar.max, self.bar.value = max(1, total), 0
            self._progress = progress(total=total, desc="chromarate run")
            text = f"checking {total} image(s)…"  # Prefect starts only if work is left
        elif kind == "start":
            text = f"running: 0/{total} image(s)"
        elif kind == "stage":
            step = event["stage"]
            if step == "tiles":
                step = f"plane {event.get('plane', 0)} tiles {event['done']}/{event['total']}"
            text = f"{Path(event['image']).name}: {step}"
        elif kind in ("done", "skipped", "failed"):
            self.bar.value = min(event["count"], self.bar.max)
            if self._progress is not None:
                self._progress.update(1)
            text = f"{event['count']}/{self.bar.max}: {Path(event['image']).name} {kind}"
        elif kind == "finished":
            self.last_result = event
            self._open(event)
        if text is not None and not self._stop.is_set():  # "cancelling…" stays until the end
            self.status.value = text

    def _open(self, event: dict[str, Any]) -> None:
        from napari.utils.notifications import show_info, show_warning

        from plugins.canvas import add_layer_data
        from plugins.layers import store_layers

        for i, store in enumerate(event["stores"]):
            add_layer_data(self._viewer, store_layers(store, visible=i == 0))
        for item in event["failed"]:
            show_warning(f"chromarate: {Path(item['image']).name} failed: {item['reason']}")
        what = "cancelled" if event["cancelled"] else "done"
        status = f"{what}: {len(event['stores'])} store(s), {len(event['failed'])} failed"
        if event["failed"]:
            status += f" ({', '.join(Path(i['image']).name for i in event['failed'])})"
        self.status.value = f"{status} → {event['out']}"
        show_info(f"chromarate run {self.status.value}")

    def _on_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"failed: {exc}"
        show_error(f"chromarate run failed: {exc}")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
