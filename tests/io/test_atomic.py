"""Atomic writes and the cleaning of partial outputs (``pipeline.io``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.io import atomic_dir, atomic_write_bytes, atomic_write_text, clean_partials


def test_atomic_dir_replaces_and_cleans(tmp_path: Path) -> None:
    final = tmp_path / "out.ome.zarr"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
    with atomic_dir(final) as tmp:
        assert tmp.name.startswith(".out.ome.zarr.partial-")
        (tmp / "v").write_text("2")
    assert (final / "v").read_text() == "2"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "v").write_text("3")
        raise RuntimeError("boom")
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"]


def test_atomic_files_and_clean_partials(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "run.json", "{}")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "run.json").read_text() == "{}"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    (tmp_path / ".x.ome.zarr.partial-abc").mkdir()
    (tmp_path / ".run.json.partial-def").write_text("half")
    old = tmp_path / ".y.partial-old"
    old.write_text("")
    os.utime(old, (0, 0))
    assert [p.name for p in clean_partials(tmp_path, min_age_s=3600)] == [".y.partial-old"]
    removed = clean_partials(tmp_path)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "run.json"]
    assert clean_partials(tmp_path / "missing") == []
