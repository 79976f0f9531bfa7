"""chromarate's errors, by type: what failed decides what the user is told and what is retried.

::

    ChromarateError
    ├── InputError      an input file is refused (deterministic: retrying cannot help)
    │   └── TooSmallError   too few pixels for a step (the bandwidth choice, the padding)
    ├── ImageError      a stage failed on one image for another reason (may be transient)
    └── SettingsError   settings that cannot work together

``str()`` of each is one line that names the file (where there is one), the problem and what
to do. Code deep in the library may raise :class:`InputError` or :class:`TooSmallError`
without a path (it does not know the file); :func:`pipeline.process` names the image when the
error passes through a stage (:func:`name_errors`, :meth:`InputError.named`). :class:`InputError` and
:class:`SettingsError` are also ``ValueError``\\ s, :class:`ImageError` a ``RuntimeError``,
so callers that caught those before still do.

Examples
--------
>>> err = TooSmallError("too few interior pixels to choose a bandwidth")
>>> str(err.named("a.tif")).startswith("a.tif: too few interior pixels")
True
>>> isinstance(err, InputError) and isinstance(err, ValueError)
True
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ChromarateError",
    "ImageError",
    "InputError",
    "SettingsError",
    "SIZE_HINT",
    "TooSmallError",
]

SIZE_HINT = ("Pass --delta and --window in micrometres (fixed bandwidths need no automatic "
             "choice), or use a larger field of view")
"""What to do about a :class:`TooSmallError`."""


class ChromarateError(Exception):
    """Base of every error chromarate raises on purpose."""


class InputError(ChromarateError, ValueError):
    """An input file that chromarate refuses; ``str()`` is ``"<path>: <reason>. <what to do>"``.

    ``path`` may be ``None`` where the file is not known yet (then ``str()`` starts at the
    reason); :meth:`named` gives the same error with the path filled in.

    Examples
    --------
    >>> str(InputError("a.tif", "it is RGB", "Save one grey channel per plane"))
    'a.tif: it is RGB. Save one grey channel per plane.'
    >>> str(InputError(None, "it is RGB"))
    'it is RGB.'
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, hint: str = "") -> None:
        super().__init__(path, reason, hint)
        self.path = Path(path) if path is not None else None
        self.reason = reason
        self.hint = hint

    def __reduce__(self):  # pickles (dask, Prefect) whatever a subclass's signature
        return (_rebuild, (type(self), self.path, self.reason, self.hint))

    def named(self, path: str | os.PathLike[str]) -> InputError:
        """A copy of this error (same type, reason and hint) that names ``path``."""
        out = copy.copy(self)
        out.path = Path(path)
        out.args = (out.path, self.reason, self.hint)
        return out

    def __str__(self) -> str:
        text = f"{self.reason.rstrip('.')}."
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.hint:
            text += f" {self.hint.rstrip('.')}."
        return text


def _rebuild(cls: type[InputError], path: Path | None, reason: str, hint: str) -> InputError:
    err = cls.__new__(cls)
    InputError.__init__(err, path, reason, hint)
    return err


class TooSmallError(InputError):
    """Too few pixels for a step: choosing the bandwidths, or padding a tile for the mollifier.

    The hint says to fix the bandwidths (then no choice is needed) or to use a larger image.

    >>> str(TooSmallError("cannot reflect-pad a tile of shape (1, 5)", path="a.tif"))[:40]
    'a.tif: cannot reflect-pad a tile of shap'
    """

    def __init__(self, reason: str, hint: str = SIZE_HINT, *,
                 path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path, reason, hint)


class ImageError(ChromarateError, RuntimeError):
    """A stage failed on one image for a reason other than a refused input.

    ``str()`` is ``"<path>: the <stage> stage failed (<detail>). <what to do>."`` Unlike
    :class:`InputError` (deterministic: the file is refused), such a failure may be transient
    (I/O, memory), so the flow retries the stages that do I/O.

    Examples
    --------
    >>> str(ImageError("a.tif", "fit", "MemoryError", "Lower --tile-size"))
    'a.tif: the fit stage failed (MemoryError). Lower --tile-size.'
    """

    def __init__(self, path: str | os.PathLike[str], stage: str, detail: str,
                 hint: str = "") -> None:
        super().__init__(path, stage, detail, hint)
        self.path, self.stage, self.detail, self.hint = Path(path), stage, detail, hint

    def __str__(self) -> str:
        text = f"{self.path}: the {self.stage} stage failed ({self.detail})."
        return text + (f" {self.hint.rstrip('.')}." if self.hint else "")


class SettingsError(ChromarateError, ValueError):
    """Settings that cannot work together (e.g. a cluster mode without its address).

    >>> str(SettingsError("cluster 'address' needs scheduler_address"))
    "cluster 'address' needs scheduler_address"
    """


_GENERIC_HINT = ("Check the file (open it in Fiji or napari), fix it or move it out of the "
                 "folder; the other images are not affected")


@contextlib.contextmanager
def name_errors(image: str | Path, stage: str) -> Iterator[None]:
    """Re-raise any failure of ``stage`` as an error that names ``image`` and says what to do.

    By type (:mod:`pipeline.errors`), never by message: an :class:`~pipeline.errors.InputError`
    raised without a path (a :class:`~pipeline.errors.TooSmallError` from the bandwidth
    choice or the padding, with its own hint) gets ``image``'s; an ``ImageError`` passes; any
    other ``ValueError`` is a property of the data (a constant channel, a channel count that
    does not match ``--channels``) and becomes an ``InputError``; anything else becomes an
    ``ImageError``.
    """
    try:
        yield
    except InputError as exc:
        if exc.path is None:
            raise exc.named(image) from exc
        raise
    except ImageError:
        raise
    except ValueError as exc:
        raise InputError(image, str(exc), _GENERIC_HINT) from exc
    except MemoryError as exc:
        raise ImageError(image, stage, "out of memory",
                         "Lower --tile-size and --workers, or use a machine with more "
                         "memory") from exc
    except Exception as exc:
        raise ImageError(image, stage, f"{type(exc).__name__}: {exc}",
                         "Run again with -v for the full traceback; if the file opens "
                         "normally elsewhere, report it with that log") from exc
