"""The registry census: a whole registry into a Parquet dataset, resumable, on threads or a Dask cluster.

``census`` (:mod:`.job`) cuts the work into units (:mod:`.plan`), runs them (:mod:`.runner`, :mod:`.dask`)
under a request budget (:mod:`.budget`), writes atomic Parquet parts (:mod:`.parts`) and a ledger
(:mod:`.ledger`); ``open_census`` reads a dataset back (:mod:`.result`). Needs the ``census`` extra
(pyarrow; ``dask[distributed]`` for ``client=``).
"""

import sys
import types
from typing import Any

from .job import census
from .result import Census, open_census

__all__ = ["Census", "census", "open_census"]


class _CallablePackage(types.ModuleType):
    """Importing ``regexplore.census`` binds the name ``census`` of the package ``regexplore`` to this
    package (Python's import system does that for every sub-package), where ``rx.census`` is the function:
    calling the package calls :func:`census`, so ``rx.census(...)`` works before and after the import."""

    def __call__(self, *args: Any, **kw: Any) -> Census:
        return census(*args, **kw)


sys.modules[__name__].__class__ = _CallablePackage
