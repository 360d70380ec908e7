"""The ledger of finished units: one small file per unit under ``<out>/_ledger/``.

A file per unit (written atomically, like the parts) lets threads, Dask workers on other machines and a
resumed process share the ledger through the dataset folder alone, with no lock and no log to repair after a
crash. A repository unit's entry keeps the pages it cut its tag list into, so a resumed census runs them
without listing the tags again. The tag list itself is kept (under ``_ledger/plans/``) as soon as it is listed,
before any page runs: a repository unit that ends with an error row runs again on resume on that same list,
so its slices match the pages that already finished even if the registry's listing changed meanwhile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .parts import atomic_write
from .plan import Unit

__all__ = ["Ledger"]


class Ledger:
    """Finished units of the census in ``out``."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.folder = Path(out) / "_ledger"

    def _path(self, unit: Unit) -> Path:
        return self.folder / f"{unit.key}.json"

    def done(self, unit: Unit) -> bool:
        """True if ``unit`` finished (its parts are all written)."""
        return self._path(unit).exists()

    def finish(self, unit: Unit, pages: list[Unit]) -> None:
        """Record ``unit`` as finished, with the page units it handed on (``pages``). Call after its parts."""
        doc = {"repository": unit.repository, "page": unit.page,
               "pages": [[p.page, list(p.tags)] for p in pages]}
        atomic_write(self._path(unit), json.dumps(doc).encode())

    def pages(self, unit: Unit) -> list[Unit]:
        """The page units a finished repository unit handed on."""
        doc = json.loads(self._path(unit).read_bytes())
        return [Unit(unit.repository, page, tuple(tags)) for page, tags in doc["pages"]]

    def _plan_path(self, unit: Unit) -> Path:
        return self.folder / "plans" / f"{unit.key}.json"

    def save_plan(self, unit: Unit, tags: list[str]) -> None:
        """Keep ``tags``, the listing repository unit ``unit`` cuts into pages (before any page runs)."""
        atomic_write(self._plan_path(unit), json.dumps({"repository": unit.repository, "tags": tags}).encode())

    def plan(self, unit: Unit) -> list[str] | None:
        """The tag listing kept by :meth:`save_plan` for repository unit ``unit``, or None."""
        try:
            return json.loads(self._plan_path(unit).read_bytes())["tags"]
        except FileNotFoundError:
            return None

    def count(self) -> int:
        """How many units finished."""
        return sum(1 for _ in self.folder.glob("*.json")) if self.folder.is_dir() else 0
