"""Which of a file's channels is which: chromatin, heterochromatin, or not read.

The roles come from ``--channels`` (which may mark channels ``ignore``), else from the names
the file gives its channels (OME ``Channel Name``, ImageJ ``Labels``), else from the default
order (one channel: heterochromatin; two: chromatin first). A file with more than two
channels is read only where it says, by ``--channels`` or by its names, which two to use.

>>> choice = choose_channels(3, ("DAPI", "H3K9me3", "Tubulin"))
>>> choice.roles, choice.index, choice.source
(('chromatin', 'heterochromatin'), (0, 1), 'channel names')
>>> choice = choose_channels(3, None, ("ignore", "heterochromatin", "chromatin"))
>>> choice.roles, choice.index
(('heterochromatin', 'chromatin'), (1, 2))
>>> choose_channels(2, None).roles, choose_channels(2, None).index
(('chromatin', 'heterochromatin'), None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np

__all__ = ["IGNORE", "ROLE_KEYWORDS", "USES", "ChannelChoice", "ChannelRole", "ChannelUse",
           "ChannelsRead", "check_channel_uses", "choose_channels", "role_from_name"]

ChannelRole = Literal["chromatin", "heterochromatin"]
ChannelUse = Literal["chromatin", "heterochromatin", "ignore"]
IGNORE = "ignore"
"""The ``--channels`` word for a channel that is not read (a third stain, transmitted light)."""
USES: tuple[str, ...] = get_args(ChannelUse)
"""The words ``--channels`` takes, one per channel: the two roles and :data:`IGNORE`."""

ROLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "heterochromatin": ("heterochromatin", "h3k9me3", "h3k9me2", "h3k27me3", "h4k20me3", "hp1"),
    "chromatin": ("chromatin", "dapi", "hoechst", "h2b", "dna", "draq5", "syto", "picogreen",
                  "yoyo"),
}
"""Words in a channel's name that say its role (compared in lower case, without spaces or
punctuation; heterochromatin's first, since its name contains "chromatin")."""


def role_from_name(name: str) -> ChannelRole | None:
    """The role a channel's name says, None when it says none (a dye, a laser line).

    >>> [role_from_name(n) for n in ("DAPI", "H3K9me3-AF647", "Heterochromatin", "Cy5")]
    ['chromatin', 'heterochromatin', 'heterochromatin', None]
    """
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    for role in ("heterochromatin", "chromatin"):
        if any(word in key for word in ROLE_KEYWORDS[role]):
            return role  # type: ignore[return-value]
    return None


class ChannelsRead(NamedTuple):
    """Which of a file's ``of`` channels are read (``index``, in the order of the roles).

    A reference frame recorded like the image (a ``--dark-frame`` or ``--flat-field`` with
    all the file's channels) is read on the same channels (:meth:`select`).

    >>> read = ChannelsRead(index=(2, 0), of=3)
    >>> read.select(np.arange(3)[:, None, None] * np.ones((3, 2, 2)))[:, 0, 0]
    array([2., 0.])
    >>> read.select(np.ones((5, 2, 2))).shape  # not the file's channel count: left as it is
    (5, 2, 2)
    """

    index: tuple[int, ...]
    of: int

    def select(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` (``(..., C, Y, X)``) on the channels read, when its channel axis (the one
        before Y and X) has the file's channel count; otherwise ``frame`` unchanged."""
        if frame.ndim >= 3 and frame.shape[-3] == self.of:
            return frame[..., list(self.index), :, :]
        return frame


class ChannelChoice(NamedTuple):
    """The channels read and their roles.

    ``roles``: one per channel read, in file order; ``source``: ``"--channels"``, ``"channel
    names"`` or ``"default"``; ``note``: for the user, when the names decided something other
    than the default or contradict ``--channels``; ``index``: the file's channels read, in the
    order of ``roles`` (None: all of them).
    """

    roles: tuple[ChannelRole, ...]
    source: str
    note: str | None
    index: tuple[int, ...] | None


def check_channel_uses(uses: Sequence[str]) -> None:
    """Refuse a ``--channels`` list whose roles are not one heterochromatin channel or two
    distinct roles (besides the ``ignore`` ones).

    >>> check_channel_uses(("chromatin", "ignore", "heterochromatin"))
    >>> check_channel_uses(("chromatin",))
    Traceback (most recent call last):
    ...
    ValueError: a single channel must be 'heterochromatin' (the single-channel model assumes a constant chromatin fraction); got 'chromatin'
    """
    for use in uses:
        if use not in USES:
            raise ValueError(f"unknown channel role {use!r}; use chromatin, heterochromatin "
                             f"or {IGNORE}")
    read = [u for u in uses if u != IGNORE]
    if len(read) not in (1, 2) or len(set(read)) != len(read):
        raise ValueError(
            f"channels must name one role or two distinct roles (the other channels "
            f"{IGNORE}), got {list(uses)}")
    if len(read) == 1 and read[0] != "heterochromatin":
        raise ValueError(
            "a single channel must be 'heterochromatin' (the single-channel model "
            f"assumes a constant chromatin fraction); got {read[0]!r}")


def _named(n_channels: int, names: Sequence[str] | None) -> list[str] | None:
    """One ``--channels`` word per channel as the names say, when exactly one name says
    chromatin and one heterochromatin (the others: ``ignore``); None otherwise."""
    if not names or len(names) != n_channels or n_channels < 2:
        return None
    said = [role_from_name(n) for n in names]
    if any(said.count(role) != 1 for role in ("chromatin", "heterochromatin")):
        return None
    return [s or IGNORE for s in said]


def _from_uses(uses: Sequence[str]) -> tuple[tuple[ChannelRole, ...], tuple[int, ...] | None]:
    index = tuple(i for i, u in enumerate(uses) if u != IGNORE)
    roles = tuple(uses[i] for i in index)
    return roles, (None if len(index) == len(uses) else index)  # type: ignore[return-value]


def _describe(index: Sequence[int], roles: Sequence[str], names: Sequence[str] | None) -> str:
    return ", ".join(f"{i} ({names[i]!r}) {r}" if names else f"{i} {r}"
                     for i, r in zip(index, roles, strict=True))


def choose_channels(n_channels: int, names: Sequence[str] | None = None,
                    declared: Sequence[str] | None = None) -> ChannelChoice:
    """The channels of a file with ``n_channels`` channels named ``names`` to read.

    ``declared`` is ``--channels`` (one word per channel of the file: a role or ``ignore``)
    and wins; else names that say one chromatin and one heterochromatin channel (the others
    saying neither, :func:`role_from_name`) decide; else the default order, which exists for
    one or two channels only.

    Raises
    ------
    ValueError
        When ``declared`` has another length than the file's channels, or the file has more
        than two channels and neither ``declared`` nor the names say which to read.
    """
    named = _named(n_channels, names)
    listed = ", ".join(f"{n!r}" for n in names or ())
    if declared is not None:
        check_channel_uses(declared)
        if len(declared) != n_channels:
            raise ValueError(
                f"--channels names {len(declared)} channel(s) ({','.join(declared)}) but the "
                f"image has {n_channels}")
        roles, index = _from_uses(declared)
        note = None
        if named is not None and list(declared) != named:
            note = (f"the file names its channels {listed}, which read as "
                    f"{','.join(named)}; --channels {','.join(declared)} was used")
        return ChannelChoice(roles, "--channels", note, index)
    if named is not None:
        roles, index = _from_uses(named)
        note = None
        if index is not None:
            skipped = [i for i in range(n_channels) if i not in index]
            note = (f"the file names its channels {listed}: channels "
                    f"{_describe(index, roles, names)} are read, "
                    f"{', '.join(f'{i} ({names[i]!r})' for i in skipped)} not (pass "  # type: ignore[index]
                    "--channels to choose others)")
        elif roles != ("chromatin", "heterochromatin"):
            note = (f"the file names its channels {listed}: read as {','.join(roles)} (not "
                    "the default chromatin-first order); pass --channels to override")
        return ChannelChoice(roles, "channel names", note, index)
    if n_channels == 1:
        return ChannelChoice(("heterochromatin",), "default", None, None)
    if n_channels == 2:
        return ChannelChoice(("chromatin", "heterochromatin"), "default", None, None)
    example = ",".join(["chromatin", "heterochromatin"] + [IGNORE] * (n_channels - 2))
    raise ValueError(
        f"the image has {n_channels} channels" + (f" (named {listed})" if names else "")
        + "; chromarate reads 1 (heterochromatin) or 2 (chromatin, heterochromatin): say "
        f"which with --channels, one word per channel, e.g. --channels {example}")
