"""The per-image manifest: what :func:`pipeline.process.ingest` learnt about one TIFF and where
its stages write, handed to every stage (and, through the Prefect tasks, to dask workers).

It is small, typed and JSON-able (``model_dump(mode="json")``). A manifest from another
version, or a plain dict, is read with :meth:`ImageManifest.of`: unknown keys are ignored and
the optional ones default; one that lacks what the stages need raises a ``ValueError`` naming
the key (the image is then ingested again, never half-read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .channels import ChannelsRead
from .config import ChannelRole

__all__ = ["ImageManifest"]


class ImageManifest(BaseModel):
    """One image's manifest (:func:`pipeline.process.ingest`).

    Paths are strings (the manifest travels as JSON and to other processes): ``image`` the
    input TIFF (resolved), ``store`` its final ``OUT/<stem>.ome.zarr``, ``work`` its stage
    folder ``OUT/.chromarate/work/<stem>-<key>``. ``done``: the store is already finished for
    ``key``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    image: str
    store: str
    work: str
    key: str
    axes: str
    shape: tuple[int, ...]
    pixel_size_um: float
    pixel_size_source: str | None = None
    n_planes: int
    plane_axis: Literal["Z", "T"] | None = None
    roles: tuple[ChannelRole, ...]
    roles_source: str = "default"
    channel_index: tuple[int, ...] | None = None
    """The file's channels read, in the order of ``roles`` (None: all)."""
    channel_names: tuple[str, ...] | None = None
    channels_note: str | None = None
    axes_source: str = "metadata"
    axes_note: str | None = None
    series_note: str | None = None
    axes_override: str | None = None
    z_step_um: float | None = None
    z_step_source: str | None = None
    nuclei_path: str | None = None
    done: bool = False

    @classmethod
    def of(cls, manifest: ImageManifest | Mapping[str, Any]) -> ImageManifest:
        """``manifest`` as an :class:`ImageManifest` (a dict, e.g. read back from JSON, is
        validated; a missing or malformed key raises a ``ValueError`` that names it)."""
        if isinstance(manifest, cls):
            return manifest
        try:
            return cls.model_validate(dict(manifest))
        except ValidationError as exc:
            bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"not an image manifest of this version ({bad}); ingest the "
                             "image again") from None

    @property
    def channels_read(self) -> ChannelsRead | None:
        """The file's channels read and how many it holds (None: all are read)."""
        if self.channel_index is None:
            return None
        return ChannelsRead(self.channel_index, self.shape[self.axes.index("C")])

    def __getitem__(self, name: str) -> Any:
        """Read access by name, for code written against the former dict manifest
        (``manifest["store"]``); new code reads the attributes."""
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """``dict.get`` for the same code."""
        return getattr(self, name) if name in type(self).model_fields else default
