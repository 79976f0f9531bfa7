"""Atomic writes: a result is either complete at its final path or absent.

Everything is first written to a hidden sibling named ``.<name>.partial-<hex>`` in the same
folder (so that the final ``rename`` stays on one filesystem) and then moved into place. A run
killed half-way leaves only such hidden entries, which :func:`clean_partials` removes.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> with atomic_dir(root / "result.ome.zarr") as tmp:
...     _ = (tmp / "zarr.json").write_text("{}")
>>> sorted(p.name for p in root.iterdir())
['result.ome.zarr']
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PARTIAL_MARKER",
    "atomic_dir",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_partials",
]

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".partial-"
"""Infix of every temporary entry; :func:`clean_partials` matches ``.*.partial-*``."""


def _partial_name(final: Path, suffix: str = "") -> Path:
    return final.parent / f".{final.name}{PARTIAL_MARKER}{uuid.uuid4().hex}{suffix}"


def _fsync_dir(folder: Path) -> None:
    """Flush a directory entry to disk (a no-op where the OS does not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``final`` on success.

    Parameters
    ----------
    final : path
        Where the finished directory should appear. An existing entry there is replaced
        only once the new one is complete (renamed aside, new renamed in, old deleted).

    Yields
    ------
    Path
        An empty temporary directory ``.<name>.partial-<hex>`` beside ``final``.

    Notes
    -----
    On any exception (including ``KeyboardInterrupt``) the temporary directory is deleted
    and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    try:
        _move_into_place(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _move_into_place(tmp: Path, final: Path) -> None:
    if not final.exists() and not final.is_symlink():
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        return
    old = _partial_name(final, "-replaced")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)  # put the previous result back
        raise
    _fsync_dir(final.parent)
    _remove(old)
    log.debug("replaced %s", final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file under a temporary name, then ``os.replace`` it onto ``final``.

    The writer receives a path (for libraries such as tifffile that open files themselves).
    The temporary file is fsynced before the replace and removed on any exception.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_file(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(final, final.suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = atomic_write_text(Path(tempfile.mkdtemp()) / "run.json", "{}")
    >>> p.read_text()
    '{}'
    """
    return atomic_write_bytes(path, text.encode(encoding))


def clean_partials(folder: str | os.PathLike[str], *, min_age_s: float = 0.0) -> list[Path]:
    """Delete leftover ``.*.partial-*`` entries in ``folder`` (from an interrupted run).

    Parameters
    ----------
    folder : path
        The folder to tidy (not recursed into). A missing folder is not an error.
    min_age_s : float
        Only remove entries last modified at least this many seconds ago. Pass a positive
        value when another run may be writing into the same folder right now.

    Returns
    -------
    list of Path
        The entries removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for entry in sorted(folder.glob(f".*{PARTIAL_MARKER}*")):
        try:
            age = now - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age_s:
            continue
        _remove(entry)
        removed.append(entry)
        log.info("removed leftover partial output %s", entry)
    return removed
