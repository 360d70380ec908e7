"""The units a census is cut into, and their deterministic names.

A unit is a repository (its tag listing and its first :data:`TAGS_PER_UNIT` tags) or a further page of a
large repository's tags. Its :attr:`Unit.key` names it in the ledger and names the Parquet parts it writes, so
a unit run twice (a retry, a Dask task run again after a lost worker, a resumed census) writes the same files.
Digest-keyed content (a manifest with its layers and history, a layer's file listing) is written under the
digest's own name, once per census, whichever unit meets it first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["TAGS_PER_UNIT", "Unit", "digest_name", "pages_of"]

#: tags handled by one unit; a repository with more is cut into pages, each a unit of its own
TAGS_PER_UNIT = 100


@dataclass(frozen=True)
class Unit:
    """One piece of census work: ``repository``, and for a page of a large repository the ``page`` number
    (from 1) and its ``tags``. Page 0, the repository unit, lists the tags itself."""

    repository: str
    page: int = 0
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """A stable file name for this unit: a hash of the repository name and page (names may hold ``/``)."""
        text = f"{self.repository}\0{self.page}"
        return f"u{self.page}-" + hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def label(self) -> str:
        """What the ``errors`` table's ``unit`` column shows: ``repo`` or ``repo#page``."""
        return self.repository if self.page == 0 else f"{self.repository}#{self.page}"


def pages_of(repository: str, tags: list[str]) -> tuple[list[str], list[Unit]]:
    """Cut ``tags`` (in listing order): the first :data:`TAGS_PER_UNIT` for the repository unit itself, and a
    page :class:`Unit` for each further slice."""
    size = TAGS_PER_UNIT
    rest = [Unit(repository, i // size, tuple(tags[i:i + size])) for i in range(size, len(tags), size)]
    return tags[:size], rest


def digest_name(digest: str) -> str:
    """The part name for digest-keyed content: ``sha256:ab…`` → ``sha256-ab…``. Raises ``ValueError`` for a
    digest that is not ``algorithm:hex`` (a hostile registry could send ``../x``)."""
    algo, _, hexpart = digest.partition(":")
    if not (algo.isalnum() and hexpart and all(c in "0123456789abcdef" for c in hexpart)):
        raise ValueError(f"not a digest: {digest[:80]!r}")
    return f"{algo}-{hexpart}"
