"""The package catalogers, one module per ecosystem, each exporting ``CATALOGERS`` (a tuple of
:class:`~regexplore.content.inside.model.Cataloger`): dpkg, apk, rpm, python, npm, golang, java. Each is a
pure function of one file's bytes (syft's rules: ../shared/docs/inside.md); :mod:`.purl` forms the package URLs.
"""

from __future__ import annotations

import importlib
import logging

from ..model import Cataloger

__all__ = ["MODULES", "all_catalogers"]

log = logging.getLogger("regexplore.inside")

MODULES = ("dpkg", "apk", "rpm", "python", "npm", "golang", "java")


def all_catalogers() -> tuple[Cataloger, ...]:
    """Every cataloger of every module in :data:`MODULES`, in that order. A module not in the tree yet (the
    modules arrive from their own branches) is left out with a warning, the others still count; any other
    import error is raised."""
    out: list[Cataloger] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            log.warning("no %s catalogers: %s is missing", name, exc.name)
            continue
        out.extend(module.CATALOGERS)
    return tuple(out)
