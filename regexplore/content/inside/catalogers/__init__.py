"""The package catalogers, one module per ecosystem, each exporting ``CATALOGERS`` (a tuple of
:class:`~regexplore.content.inside.model.Cataloger`): dpkg, apk, rpm, python, npm, golang, java. Each is a
pure function of one file's bytes (syft's rules: ../shared/docs/inside.md); :mod:`.purl` forms the package URLs.
"""

from __future__ import annotations

import importlib

from ..model import Cataloger

__all__ = ["MODULES", "all_catalogers"]

MODULES = ("dpkg", "apk", "rpm", "python", "npm", "golang", "java")


def all_catalogers() -> tuple[Cataloger, ...]:
    """Every cataloger of every module in :data:`MODULES`, in that order (a module that does not import is
    a bug: its ImportError is raised)."""
    out: list[Cataloger] = []
    for name in MODULES:
        out.extend(importlib.import_module(f"{__name__}.{name}").CATALOGERS)
    return tuple(out)
