"""The browser's "supply chain" tab: what is attached to the shown image, from ``reg.referrers``,
``reg.verify``, ``reg.attestations`` and ``reg.provenance``.

- referrers: the tree of manifests whose ``subject`` is the image (and, for an index, the chosen
  platform's manifest), referrers of referrers indented under their subject;
- signatures: cosign's, verified with the public key typed in ``key`` (a ``cosign.pub`` path), else
  listed as found;
- attestations: the in-toto predicate types per platform, and the SLSA provenance's builder.

:func:`gather` asks the registry (the browser runs it in the background); :meth:`SupplyView.show` renders
what it returned. The data stays in public attributes (``found``) and the widgets carry the CSS classes
``regexplore-supply-key``, ``regexplore-supply-referrers``, ``regexplore-supply-signatures`` and
``regexplore-supply-attestations``, for tests.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..errors import NotFound

__all__ = ["SupplyView", "gather", "tree_order"]

_SIGNATURE_COLUMNS = ["digest", "source", "verified", "docker_reference", "key", "error"]


def gather(reg: Any, ref: str, platform: str | None, key: str | None) -> dict[str, Any]:
    """What the tab shows for ``ref`` (``platform``: the shown platform of an index): ``trees`` (title,
    referrers frame) pairs, ``signatures`` (``reg.verify`` with ``key``, a path, or None), ``attestations``
    and ``provenance`` (the dict of ``reg.provenance``, None when there is none). Registry errors other than
    a missing provenance propagate."""
    top = reg.manifest(ref)
    trees = [("index" if top.is_index else "image", reg.referrers(ref, recursive=True))]
    chosen = platform if top.is_index else None
    if chosen:
        trees.append((chosen, reg.referrers(ref, platform=chosen, recursive=True)))
    try:
        provenance = reg.provenance(ref, chosen)
    except NotFound:
        provenance = None
    return {"ref": ref, "platform": chosen, "trees": trees, "signatures": reg.verify(ref, key or None),
            "attestations": reg.attestations(ref), "provenance": provenance}


def tree_order(referrers: pd.DataFrame) -> list[dict]:
    """The rows of a recursive ``referrers`` frame in tree order: each row followed by its own referrers
    (rows whose ``subject`` is its digest), depth first. Every row appears once (the frame lists each
    manifest once, so there is no cycle)."""
    rows = referrers.to_dict("records")
    children: dict[str, list[dict]] = {}
    for row in rows:
        children.setdefault(row["subject"], []).append(row)
    top = referrers.attrs.get("digest")
    stack = list(reversed(children.get(top, []) if top else [r for r in rows if r["depth"] == 1]))
    out: list[dict] = []
    while stack:
        row = stack.pop()
        out.append(row)
        stack.extend(reversed(children.get(row["digest"], [])))
    return out


def _tree_html(title: str, referrers: pd.DataFrame) -> str:
    lines = [f"<div><b>referrers of the {html.escape(title)}</b> "
             f"<code>{html.escape(str(referrers.attrs.get('digest', ''))[:19])}</code>: {len(referrers)}</div>"]
    for row in tree_order(referrers):
        kind = row["artifact_type"] if isinstance(row["artifact_type"], str) else "(no artifact type)"
        lines.append(f"<div class='regexplore-supply-node' style='padding-left:{1.5 * int(row['depth'])}em'>"
                     f"└ {html.escape(kind)} <code>{html.escape(str(row['digest'])[:19])}</code> "
                     f"<span>{html.escape(str(row['source']))}</span></div>")
    return "".join(lines)


def _signatures_summary(df: pd.DataFrame) -> str:
    if df.empty:
        return "no cosign signature"
    count = f"{len(df)} signature{'s' if len(df) != 1 else ''}"
    keys = {k for k in df["key"] if isinstance(k, str)}
    if not keys:
        return f"{count} found (type a public key path to verify)"
    return f"{count}, {int(df['verified'].sum())} verified with {', '.join(sorted(keys))}"


def _attestations_html(attestations: pd.DataFrame, provenance: dict | None, platform: str | None) -> str:
    parts = []
    for plat, group in attestations.groupby("platform", sort=False, dropna=False):
        kinds = ", ".join(dict.fromkeys(str(t) for t in group["predicate_type"]))
        parts.append(f"<div><b>{html.escape(str(plat))}</b>: {html.escape(kinds)}</div>")
    if not parts:
        parts.append("<div>no buildkit attestation</div>")
    if provenance is None:
        parts.append("<div>provenance: none found</div>")
    else:
        where = f" ({platform})" if platform else ""
        parts.append(f"<div>provenance{html.escape(where)}: builder <code>{html.escape(str(provenance['builder_id']))}"
                     f"</code>, build type <code>{html.escape(str(provenance['build_type']))}</code>, "
                     f"{len(provenance['materials'])} materials ({html.escape(str(provenance['source']))})</div>")
    return "".join(parts)


class SupplyView(widgets.VBox):
    """Key box, referrers tree, signatures, attestations. :meth:`show` fills it with :func:`gather`'s
    answer, :meth:`clear` empties it, :meth:`loading` says it is on its way."""

    def __init__(self, table_html: Callable[..., str]) -> None:
        self._table_html = table_html      # the browser's table renderer (escaping, short digests)
        self.found: dict[str, Any] | None = None
        self.key = widgets.Text(placeholder="path of a cosign.pub to verify signatures", description="key",
                                continuous_update=False, layout=widgets.Layout(width="420px"))
        scroll = {"max_height": "260px", "overflow": "auto"}
        self.referrers_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.signatures_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.attestations_html = widgets.HTML(layout=widgets.Layout(**scroll))
        self.key.add_class("regexplore-supply-key")
        for name in ("referrers", "signatures", "attestations"):
            getattr(self, f"{name}_html").add_class(f"regexplore-supply-{name}")
        super().__init__([self.key, self.referrers_html, self.signatures_html, self.attestations_html])

    def loading(self) -> None:
        self.clear()
        self.referrers_html.value = "<i>reading referrers, signatures and attestations…</i>"

    def clear(self) -> None:
        self.found = None
        for w in (self.referrers_html, self.signatures_html, self.attestations_html):
            w.value = ""

    def show(self, found: dict[str, Any]) -> None:
        """Render :func:`gather`'s answer."""
        self.found = found
        self.referrers_html.value = "".join(_tree_html(title, df) for title, df in found["trees"])
        sigs = found["signatures"]
        self.signatures_html.value = (f"<div><b>signatures</b>: {html.escape(_signatures_summary(sigs))}</div>"
                                      + (self._table_html(sigs, _SIGNATURE_COLUMNS) if len(sigs) else ""))
        self.attestations_html.value = "<div><b>attestations</b></div>" + _attestations_html(
            found["attestations"], found["provenance"], found["platform"])
