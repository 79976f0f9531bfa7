"""How ``chromarate run`` will read one TIFF, decided from its metadata alone (no pixel read
beyond the first strip): its layout, pixel size, the channels read and their roles, and the
notes for the user; or the reason it is refused. ``chromarate check`` prints this for a folder
before any work; :func:`pipeline.process.ingest` builds the image's manifest on it.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from pipeline.config import Settings
>>> from pipeline.io import write_tiff
>>> path = write_tiff(Path(tempfile.mkdtemp()) / "a.tif", np.zeros((2, 32, 32), np.uint16),
...                   axes="CYX", pixel_size_um=0.02)
>>> c = check_image(path, Settings())
>>> c.info.axes, c.roles, c.roles_source, c.notes
('CYX', ('chromatin', 'heterochromatin'), 'default', [])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .channels import ChannelRole
from .config import TESTED_PIXEL_UM, Settings, pixel_size_untested
from .errors import InputError
from .illumination import check_flat_field_size
from .io import inspect_tiff
from .io.metadata import ImageInfo
from .user_labels import find_user_labels, read_user_labels

__all__ = ["MIN_SIDE_PX", "RAW_MOVIE_PIXEL_UM", "RAW_MOVIE_PLANES", "ImageCheck", "check_image"]

MIN_SIDE_PX = 16
"""Smallest image side: the denoising filters read up to 8 pixels of context either side."""
RAW_MOVIE_PLANES = 500
RAW_MOVIE_PIXEL_UM = 0.065
"""A stack of at least :data:`RAW_MOVIE_PLANES` planes at camera pixels (at least
:data:`RAW_MOVIE_PIXEL_UM` µm) is refused as a raw single-molecule acquisition: thousands of
blinking frames, not a super-resolution image (each would be fitted as a plane, for hours)."""


@dataclass
class ImageCheck:
    """How one file will be read: :func:`check_image`."""

    info: ImageInfo
    roles: tuple[ChannelRole, ...]
    roles_source: str
    channels_note: str | None
    channel_index: tuple[int, ...] | None
    labels: Path | None = None
    notes: list[str] = field(default_factory=list)
    """For the user: how unnamed axes were read, series not read, the channels chosen by
    their names, a pixel size outside the tested range."""


def check_image(path: str | Path, settings: Settings) -> ImageCheck:
    """How ``chromarate run`` with ``settings`` will read ``path``, from its metadata.

    Raises :class:`~pipeline.io.InputError` (naming the file) for a file that cannot be
    processed with ``settings``: see :func:`pipeline.io.inspect_tiff`, plus an image side
    under :data:`MIN_SIDE_PX`, a raw single-molecule movie, a channel count that
    ``--channels`` or ``--calibration`` does not match or more than two channels that
    neither says how to read, a flat field of another size, or a bad label image.
    """
    info = inspect_tiff(path, pixel_size_um=settings.pixel_size_um, axes=settings.run.axes,
                        z_step_um=settings.run.z_step_um, warn=False)
    h, w = (info.shape[info.axes.index(a)] for a in "YX")
    if min(h, w) < MIN_SIDE_PX:
        channels_last = info.axes_source == "default" and w <= 4 < h
        raise InputError(path, f"the image is {h} x {w} pixels; chromarate needs at least "
                         f"{MIN_SIDE_PX} x {MIN_SIDE_PX}",
                         "If it is a channels-last (Y, X, C) array saved page by page, pass "
                         "--axes YXC" if channels_last else
                         "Use a larger field of view, or move the file out of the folder")
    if info.n_planes >= RAW_MOVIE_PLANES and info.pixel_size_um >= RAW_MOVIE_PIXEL_UM:
        raise InputError(
            path, f"it holds {info.n_planes} {info.plane_axis or 'Z'} planes of {h} x {w} "
            f"camera pixels ({info.pixel_size_um:.3g} µm): a raw single-molecule (STORM/PALM) "
            "acquisition, not a super-resolution image",
            "Localise it first (ThunderSTORM, Picasso, SMAP), render the localisations at "
            "0.01-0.03 µm per pixel (chromarate render TABLE --pixel-size 0.02 --out "
            "FIELD.ome.tif, or your software's rendering) and run chromarate on the "
            "rendering; move the raw movie out of the folder")
    try:
        roles, roles_source, channels_note, channel_index = settings.channel_roles(
            info.n_channels, info.channel_names)
        settings.calibration_for(len(roles))
    except ValueError as exc:
        hint = ("Pass --channels with one word per channel (chromatin, heterochromatin or "
                "ignore), or save only the chromatin and heterochromatin channels in their "
                "own file" if info.n_channels > 2 else
                "Run files with this channel count separately, with a matching --channels "
                "and --calibration (or leave those out)")
        raise InputError(path, str(exc), hint) from exc
    if settings.flat_field is not None:
        try:  # its size, from its header, so that a mismatch fails before any work
            check_flat_field_size(settings.flat_field, (h, w))
        except ValueError as exc:
            raise InputError(path, str(exc), "Record a flat field for this image's size, or "
                             "run the images of this size separately without --flat-field"
                             ) from exc
    labels = None
    if settings.run.nuclei_dir and settings.run.segment:
        labels = find_user_labels(path, settings.run.nuclei_dir)
        try:  # checked now, so that a bad label file fails before any work
            read_user_labels(labels, (h, w), info.n_planes, info.plane_axis is not None)
        except InputError as exc:
            raise InputError(path, f"its label image {labels}: {exc.reason}", exc.hint) from exc
    notes = [n for n in (info.axes_note, info.series_note, channels_note) if n]
    if pixel_size_untested(info.pixel_size_um):
        lo, hi = TESTED_PIXEL_UM
        notes.append(f"pixel size {info.pixel_size_um:.4g} µm lies outside {lo:g}-{hi:g} µm, "
                     "where chromarate's accuracy was measured (super-resolution images): λ "
                     "is not validated there (flag pixel-size-untested)")
    return ImageCheck(info=info, roles=tuple(roles), roles_source=roles_source,
                      channels_note=channels_note, channel_index=channel_index,
                      labels=labels, notes=notes)
