"""regexplore in Jupyter: the ``browse`` widget and helpers for notebooks.

Importing :mod:`regexplore` never imports this package (``regexplore.browse`` is resolved lazily), so
ipywidgets and tqdm cost nothing until a notebook asks for a widget::

    import regexplore as rx
    reg = rx.Registry("127.0.0.1:5000")
    rx.browse(reg)                      # search → repository → tag → image → download
"""

from __future__ import annotations

from typing import Any

from .browser import RegistryBrowser

__all__ = ["browse", "RegistryBrowser"]


def browse(registry: Any, **kw: Any) -> RegistryBrowser:
    """One widget to explore ``registry`` (a :class:`regexplore.Registry` or a host / URL string).

    Keyword arguments go to :class:`RegistryBrowser` (``dest`` for downloads, ``executor`` for the
    background work). The widget is returned; display it as the last expression of a cell.
    ``.value`` (or ``.selected``) is the current selection as a dict.
    """
    return RegistryBrowser(registry, **kw)
