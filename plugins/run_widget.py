"""The run dock widget: choose a folder and settings, run in a worker thread, open the results.

The work is :func:`plugins.runner.run_folder`, the Prefect flow of ``chromarate run``, driven by
a napari ``thread_worker`` (``create_worker``), so the GUI thread never blocks. Progress shows
in the widget and in napari's activity dock (``napari.utils.progress``); errors become
notifications. The settings fields take their defaults, choices, bounds and tooltips from
:class:`pipeline.config.Settings` (:mod:`plugins.run_fields`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from plugins.run_fields import PAIRS, FieldSpec, field_spec
from plugins.runner import (
    OtherSettingsError,
    build_settings,
    calibration_text,
    config_fields,
    default_out_dir,
    run_folder,
)

if TYPE_CHECKING:
    import napari

__all__ = ["RunWidget"]

ENSEMBLE_MAX = 64
TILE_MAX = 16384
OVERWRITE_HELP = ("replace results in the results folder made with other settings, as "
                  "chromarate run --overwrite (without it, such a folder is refused and nothing "
                  "is written)")


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
        self._error: BaseException | None = None
        self.worker: Any = None
        self.last_result: dict[str, Any] | None = None
        self.folder = FileEdit(label="TIFF folder", mode="d")
        self.out = FileEdit(label="results (optional)", mode="d")
        # defaults, choices, bounds and help: pipeline.config.Settings (plugins.run_fields)
        self.method = _choice(field_spec("method"))
        self.device = _choice(field_spec("device"))
        ensemble = field_spec("ensemble_size")
        self.ensemble = SpinBox(label=ensemble.label, value=ensemble.default,
                                min=ensemble.minimum or 2, max=ENSEMBLE_MAX, step=2,
                                tooltip=f"{ensemble.help}; their spread gives λ std")
        tile = field_spec("tile_size_px")
        self.tile = SpinBox(label=tile.label, value=tile.default, min=tile.minimum or 16,
                            max=TILE_MAX, step=64, tooltip=tile.help)
        calibration = field_spec("calibration")
        self.calibration = _choice(calibration, extra=(PAIRS,))
        self.pairs = LineEdit(label=PAIRS, value="", tooltip="one OFFSET:SCALE for every "
                              "channel, or one per channel: 100:0.001,50:0.002")
        self.set_calibration(calibration_text(calibration.default))  # a mode, or pairs
        channels = field_spec("channels")
        self.channels = LineEdit(label=channels.label, value="", tooltip=channels.help)
        self.overwrite = CheckBox(text="overwrite results made with other settings",
                                  value=False, tooltip=OVERWRITE_HELP)
        self.config = FileEdit(label="settings file (optional)", mode="r",
                               filter="*.toml *.yaml *.yml")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.bar = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(label="status", value="idle")
        self.status.native.setWordWrap(True)  # a refusal names every differing setting
        self.extend([
            self.folder, self.out, self.method, self.device, self.ensemble, self.tile,
            self.calibration, self.pairs, self.channels, self.config, self.overwrite, self.run_button,
            self.cancel_button, self.bar, self.status,
        ])
        self.calibration.changed.connect(self._on_calibration)
        self._on_calibration()
        self.config.changed.connect(self._load_config)
        self.run_button.changed.connect(lambda *_: self.start())
        self.cancel_button.changed.connect(lambda *_: self.cancel())

    @property
    def calibration_value(self) -> str:
        """The calibration as ``--calibration`` takes it: a mode, or the ``OFFSET:SCALE``
        pairs typed."""
        return self.pairs.value if self.calibration.value == PAIRS else self.calibration.value

    def set_calibration(self, text: str) -> None:
        """Show ``text`` (a mode, or ``OFFSET:SCALE[,...]``) in the calibration fields."""
        text = text.strip()
        if text.lower() in self.calibration.choices:
            self.calibration.value = text.lower()
        else:
            self.calibration.value, self.pairs.value = PAIRS, text

    def _on_calibration(self, *_: Any) -> None:
        self.pairs.enabled = self.calibration.value == PAIRS

    def _load_config(self, *_: Any) -> None:
        """Show the values a chosen settings file sets (the fields then override it)."""
        from napari.utils.notifications import show_error

        try:
            found = config_fields(_path_or_none(self.config.value))
        except ValueError as exc:
            show_error(f"chromarate: cannot read the settings file: {exc}")
            return
        widgets = {"method": self.method, "device": self.device, "ensemble_size": self.ensemble,
                   "tile_size_px": self.tile}
        for key, value in found.items():
            if key == "calibration":
                self.set_calibration(value)
            elif key == "channels":
                self.channels.value = value
            else:
                widgets[key].value = value

    def start(self) -> Any:
        """Validate the fields and start the run; returns the worker, or None on bad input."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        folder = _path_or_none(self.folder.value)
        if folder is None or not folder.exists():
            show_error(f"chromarate: choose a folder of TIFFs (got {str(folder or '')!r})")
            return None
        if self.calibration.value == PAIRS and not self.pairs.value.strip():
            show_error(f"chromarate: type the calibration as {PAIRS}[,{PAIRS}] (one pair for "
                       "every channel, or one per channel), or choose a mode")
            return None
        try:
            settings = build_settings(
                method=self.method.value,
                device=self.device.value,
                ensemble_size=self.ensemble.value or None,
                tile_size_px=self.tile.value or None,
                calibration=self.calibration_value or None,
                channels=self.channels.value or None,
                config=_path_or_none(self.config.value),
            )
        except ValueError as exc:
            show_error(f"chromarate: bad settings: {exc}")
            return None
        out = _path_or_none(self.out.value) or default_out_dir(folder)
        self._stop.clear()
        self._error = None
        worker = create_worker(
            run_folder, folder, out, settings, should_stop=self._stop.is_set,
            overwrite=bool(self.overwrite.value),
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
        # "cancelling…", an error and the final line stay (napari's progress() may handle the
        # worker's later events, its error or its end, while this handler is still setting up
        # for "starting": this line must not then overwrite theirs)
        if (text is not None and not self._stop.is_set() and self._error is None
                and self.last_result is None):
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

        self._error = exc
        what = "refused" if isinstance(exc, OtherSettingsError) else "failed"
        self.status.value = f"{what}: {exc}"
        show_error(f"chromarate run {what}: {exc}")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.run_button.enabled, self.cancel_button.enabled = True, False


def _choice(spec: FieldSpec, extra: tuple[str, ...] = ()) -> ComboBox:
    """A drop-down of the field's choices (and ``extra``), the default first and marked."""
    first = [spec.default] if spec.default in spec.choices else []
    values = first + [c for c in spec.choices if c not in first] + list(extra)
    return ComboBox(label=spec.label, value=values[0], tooltip=spec.help or None,
                    choices=[(f"{v} (default)" if v in first else v, v) for v in values])
