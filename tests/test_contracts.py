"""The contracts: pipeline never imports prefect, napari, Qt or the benchmarks; the cache key
covers exactly the modules that change results; errors are told apart by type."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"prefect", "prefect_dask", "napari", "qtpy", "PyQt5", "PyQt6", "PySide6", "magicgui",
             "benchmarks", "deepxde"}


def test_pipeline_has_no_forbidden_imports():
    bad = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad, bad


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter not installed")
def test_import_linter_contracts_kept():
    out = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- the cache key
def _py_modules(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.py")}


def _covered(module: str, entries) -> bool:
    return any(module == e or module.startswith(e.rstrip("/") + "/") for e in entries)


def test_every_pipeline_module_is_classified_for_the_cache_key():
    """Each module under pipeline/ is either hashed into the cache key or listed as one that
    cannot change a result; a new module fails here until someone decides which."""
    from pipeline import cache as process

    root = ROOT / "pipeline"
    both = process.RESULT_SOURCES + process._NOT_RESULT_SOURCES
    # a result module that moved would silently leave the key: the list must follow it
    missing = [e for e in process.RESULT_SOURCES if not (root / e).exists()]
    assert not missing, f"listed in pipeline/cache.py but gone: {missing}"
    unclassified = sorted(m for m in _py_modules(root) if not _covered(m, both))
    assert not unclassified, (
        f"add these to RESULT_SOURCES or _NOT_RESULT_SOURCES in pipeline/cache.py: "
        f"{unclassified}")
    twice = sorted(m for m in _py_modules(root) if _covered(m, process.RESULT_SOURCES)
                   and _covered(m, process._NOT_RESULT_SOURCES))
    assert not twice, twice


def test_cache_key_changes_only_with_result_modules(tmp_path):
    """On a copy of pipeline/: editing a plot, the simulator or the metrics keeps the key;
    editing the mollifier, an estimator or the settings changes it."""
    from pipeline import cache as process

    copy = tmp_path / "pipeline"
    shutil.copytree(ROOT / "pipeline", copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = process._source_digest(copy)
    assert base == process._source_digest(ROOT / "pipeline")  # a copy hashes the same

    def edited(rel: str) -> str:
        path = copy / rel
        old = path.read_text()
        path.write_text(old + "\n# an edit\n")
        try:
            return process._source_digest(copy)
        finally:
            path.write_text(old)

    for rel in ("metrics.py", "errors.py", "simulate/__init__.py", "report/__init__.py"):
        if (copy / rel).exists():
            assert edited(rel) == base, rel
    for rel in ("mollifier.py", "mollifier_kernels.py", "config.py", "estimate/__init__.py",
                "io/tiff.py", "process.py"):
        assert edited(rel) != base, rel


# --------------------------------------------------------------------------- errors by type
def test_errors_are_classified_by_type_not_message():
    """A too-small tile raises TooSmallError at the source (no path: the layer does not know
    the file); passing through a stage names the image and keeps the type and its hint; a
    plain ValueError becomes an InputError; anything else an ImageError. All pickle (dask)."""
    import pickle

    import torch

    from pipeline.errors import SIZE_HINT, ImageError, InputError, TooSmallError, name_errors
    from pipeline.mollifier import Mollifier

    with pytest.raises(TooSmallError) as raw:
        Mollifier(0.06, 0.02, ("u",))(torch.zeros(1, 1, 1, 8))
    assert raw.value.path is None
    with pytest.raises(TooSmallError) as named:
        with name_errors("cell.tif", "fit"):
            raise raw.value
    assert named.value.path == Path("cell.tif") and named.value.hint == SIZE_HINT
    assert str(named.value).startswith("cell.tif: cannot reflect-pad")
    again = pickle.loads(pickle.dumps(named.value))
    assert type(again) is TooSmallError and str(again) == str(named.value)
    # the message no longer decides: "too small" in a plain ValueError is just data trouble
    with pytest.raises(InputError) as plain:
        with name_errors("cell.tif", "fit"):
            raise ValueError("the image is too small")
    assert type(plain.value) is InputError and SIZE_HINT not in str(plain.value)
    with pytest.raises(ImageError, match="cell.tif: the fit stage failed"):
        with name_errors("cell.tif", "fit"):
            raise KeyError("x")
    # still importable where callers found them before
    from pipeline import process
    from pipeline.io import InputError as io_input_error

    assert io_input_error is InputError and process.ImageError is ImageError
