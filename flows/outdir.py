"""The results folder of a run: refused early when it cannot be written, and locked while a
run writes to it, so that two runs into one folder never delete each other's partial outputs.

Both :func:`flows.flow.run` (every caller: the CLI, the napari run widget, code) and the CLI
(before Prefect starts, so that a bad ``--out`` fails fast) use them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["check_out", "out_lock"]


def check_out(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work starts."""
    from pipeline.io import InputError

    if out.exists() and not out.is_dir():
        raise InputError(out, "the output path is a file, not a folder",
                         "Pass --out a folder (it is created if missing)")
    probe = out / f".write-test.partial-{uuid.uuid4().hex}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(out, f"the output folder cannot be written ({exc.strerror or exc})",
                         "Choose a folder you can write to with --out, or fix its "
                         "permissions") from exc


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.chromarate/run.lock`` for the run: a second run into ``out`` is refused.

    Two runs into one folder would delete each other's partial outputs. Uses ``flock``,
    which the OS releases when the process ends, even on ``kill -9``; where there is no
    ``fcntl`` (Windows) nothing is locked.
    """
    from pipeline.io import InputError
    from pipeline.process import WORK_DIR

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = out / WORK_DIR / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InputError(out, f"another chromarate run ({holder}) is writing to this "
                             "folder now", "Wait for it to finish, or pass another --out"
                             ) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
