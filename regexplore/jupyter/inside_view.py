"""The browser's "inside" tab: the image's operating system, its packages (with a filter box) and its wasted
files, from ``reg.os_release``, ``reg.packages`` and ``reg.efficiency`` (one pass over each layer, shared).

The data is kept in public attributes (``os_release``, ``packages``, ``efficiency``, ``shown``: the packages
the filter lets through) so the view is testable without a browser; the widgets carry the CSS classes
``regexplore-inside-os``, ``regexplore-inside-filter``, ``regexplore-inside-packages`` and
``regexplore-inside-wasted``.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import pandas as pd

__all__ = ["InsideView", "os_line"]

_PACKAGE_COLUMNS = ["name", "version", "type", "layer", "path"]


def os_line(os_release: dict | None) -> str:
    """``"Debian GNU/Linux 12 (bookworm) (debian 12)"`` from an os-release dict; ``"unknown"`` for None."""
    if not os_release:
        return "unknown"
    name = os_release.get("PRETTY_NAME") or os_release.get("NAME") or os_release.get("ID") or "?"
    ident = " ".join(x for x in (os_release.get("ID"), os_release.get("VERSION_ID")) if x)
    return f"{name} ({ident})" if ident and ident != name else name


def matching(packages: pd.DataFrame, text: str) -> pd.DataFrame:
    """The rows whose name, version, type or purl contains ``text`` (case-insensitive); all for ""."""
    needle = text.strip().lower()
    if not needle:
        return packages
    hit = pd.Series(False, index=packages.index)
    for col in ("name", "version", "type", "purl"):
        hit |= packages[col].fillna("").str.lower().str.contains(needle, regex=False)
    return packages[hit]


class InsideView(widgets.VBox):
    """OS line, filter box, packages table, wasted-files table. :meth:`show` fills it, :meth:`clear` empties
    it; typing in ``filter`` re-renders the packages table from ``packages``."""

    def __init__(self, table_html: Any) -> None:
        self._table_html = table_html      # the browser's table renderer (escaping, short digests, sizes)
        self.os_release: dict | None = None
        self.packages: pd.DataFrame | None = None
        self.efficiency: Any = None
        self.shown: pd.DataFrame | None = None
        self.os_html = widgets.HTML()
        self.filter = widgets.Text(placeholder="filter packages…", description="packages",
                                   continuous_update=True, layout=widgets.Layout(width="320px"))
        scroll = {"max_height": "300px", "overflow": "auto"}
        self.packages_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.wasted_html = widgets.HTML(layout=widgets.Layout(**scroll))
        for name in ("os", "filter", "packages", "wasted"):
            getattr(self, name if name == "filter" else f"{name}_html").add_class(f"regexplore-inside-{name}")
        self.filter.observe(lambda _change: self._render_packages(), names="value")
        super().__init__([self.os_html, self.filter, self.packages_html, self.wasted_html])

    def loading(self) -> None:
        self.clear()
        self.os_html.value = "<i>reading the layers (once per layer)…</i>"

    def clear(self) -> None:
        self.os_release = self.packages = self.efficiency = self.shown = None
        for w in (self.os_html, self.packages_html, self.wasted_html):
            w.value = ""

    def show(self, os_release: dict | None, packages: pd.DataFrame, efficiency: Any) -> None:
        """Fill the view with an image's answers (``efficiency`` as ``reg.efficiency`` returns it)."""
        self.os_release, self.packages, self.efficiency = os_release, packages, efficiency
        self.os_html.value = f"<b>OS</b>: {html.escape(os_line(os_release))}"
        self._render_packages()
        self.wasted_html.value = (
            f"<b>wasted</b>: {efficiency.wasted_bytes:,} bytes, efficiency {efficiency.score:.2%}"
            + self._table_html(efficiency.files.head(50)))

    def _render_packages(self) -> None:
        if self.packages is None:
            return
        self.shown = matching(self.packages, self.filter.value)
        counts = ", ".join(f"{n} {t}" for t, n in self.shown["type"].value_counts().items())
        self.packages_html.value = (f"<div>{len(self.shown)} of {len(self.packages)} packages"
                                    f"{': ' + html.escape(counts) if counts else ''}</div>"
                                    + self._table_html(self.shown, _PACKAGE_COLUMNS))
