"""regexplore in Jupyter: the ``browse`` widget and helpers for notebooks.

Importing :mod:`regexplore` never imports this package (``regexplore.browse`` is resolved lazily), so
ipywidgets and tqdm cost nothing until a notebook asks for a widget (:mod:`regexplore.jupyter.plots`
needs neither)::

    import regexplore as rx
    reg = rx.Registry("127.0.0.1:5000")
    rx.browse(reg)                      # search → repository → tag → image → download
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .browser import RegistryBrowser

__all__ = ["browse", "RegistryBrowser"]


def __getattr__(name: str) -> Any:  # ipywidgets only when a widget is asked for (plots need none)
    if name == "RegistryBrowser":
        from .browser import RegistryBrowser

        return RegistryBrowser
    raise AttributeError(f"module 'regexplore.jupyter' has no attribute {name!r}")


def browse(registry: Any, **kw: Any) -> RegistryBrowser:
    """One widget to explore ``registry`` (a :class:`regexplore.Registry` or a host / URL string).

    Keyword arguments go to :class:`RegistryBrowser` (``dest`` for downloads, ``executor`` for the
    background work). The widget is returned; display it as the last expression of a cell.
    ``.value`` (or ``.selected``) is the current selection as a dict.
    """
    from .browser import RegistryBrowser

    return RegistryBrowser(registry, **kw)
