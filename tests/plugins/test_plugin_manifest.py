"""The npe2 manifest and the optional-dependency boundary."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "plugins" / "napari.yaml"
_BLOCK_GUI = (
    "import sys\n"
    "for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui'):\n"
    "    sys.modules[m] = None\n"
)


def test_manifest_validates_and_imports() -> None:
    npe2 = pytest.importorskip("npe2")
    pytest.importorskip("magicgui")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "chromarate"
    manifest.validate_imports()
    contrib = manifest.contributions
    assert {w.display_name for w in contrib.widgets} == {"Inspect rate maps", "Run"}
    assert {s.key for s in contrib.sample_data} == {"smooth", "lognormal", "step"}
    assert contrib.readers[0].accepts_directories


def test_manifest_is_registered_under_the_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="napari.manifest")}
    assert found.get("chromarate") == "plugins:napari.yaml"


def test_npe2_validate_cli() -> None:
    pytest.importorskip("npe2")
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "chromarate"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


def test_plain_modules_import_without_napari_or_qt() -> None:
    code = _BLOCK_GUI + (
        "import plugins, plugins.layers, plugins.reader, plugins.summary, plugins.runner,"
        " plugins.sample, plugins.view, plugins.canvas, plugins.inspect_data, plugins.run_fields\n"
        "print(plugins.view.main('.'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2" and "pip install 'chromarate[napari]'" in out.stderr
