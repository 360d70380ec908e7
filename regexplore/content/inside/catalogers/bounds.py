"""The one error the binary catalogers raise on bad bytes, and the check that raises it.

The layer pass turns any exception from a cataloger's ``read`` into a :class:`~..model.Skipped`; raising
:class:`Malformed` (never an ``IndexError`` or ``struct.error`` from a slip past the end) is what says the
bytes were judged and refused, with a reason a user can act on.
"""

from __future__ import annotations

__all__ = ["Malformed", "need"]


class Malformed(ValueError):
    """On-disk bytes (an rpm header, a database page, an ELF, a zip) break their format or a cap."""


def need(condition: bool, reason: str) -> None:
    """Raise :class:`Malformed` with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise Malformed(reason)
