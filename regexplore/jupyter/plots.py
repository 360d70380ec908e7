"""Three plots that answer common questions about images; matplotlib is imported only when one is drawn.

- :func:`layer_sizes`: which layers of an image weigh what (one bar per layer, labelled by the step
  that made it);
- :func:`tags_over_time`: when the tags of a repository were built, and how big they are;
- :func:`shared_layers`: which layers the tags of a repository share (a tag × layer matrix), with the
  data behind it from :func:`layer_matrix`;
- :func:`packages_per_layer`: how many packages of each type each layer introduced (``reg.packages``),
  labelled by the Dockerfile step when ``reg.history`` is given;
- :func:`wasted_files`: the biggest wasted files of ``reg.efficiency(ref).files``.

Every function takes the DataFrames regexplore returns (so they work offline on saved frames) and an
optional ``ax``; each returns the matplotlib ``Axes`` it drew on.

>>> ax = layer_sizes(reg.layers("library/webapp:latest"))          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from ..registry import Registry

__all__ = ["layer_sizes", "tags_over_time", "layer_matrix", "shared_layers", "packages_per_layer", "wasted_files"]

_MIB = 1024 * 1024


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    _fig, new_ax = plt.subplots(figsize=size)
    return new_ax


def _short(text: Any, width: int = 48) -> str:
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def layer_sizes(layers: pd.DataFrame, ax: Axes | None = None, *, title: str | None = None) -> Axes:
    """Horizontal bars: the compressed size (MiB) of each layer of ``reg.layers(ref)``, top layer last.

    Labels are the Dockerfile step that made the layer (``created_by``) when known, else the digest.
    Raises ``ValueError`` for a frame without ``size``.
    """
    if "size" not in layers.columns:
        raise ValueError("layer_sizes needs a frame with a 'size' column (reg.layers(ref))")
    ax = _axes(ax, (8, 0.45 * max(len(layers), 2) + 1))
    labels = [
        f"{int(i)}: {_short(step) or str(d)[7:19]}"
        for i, step, d in zip(layers.get("index", range(len(layers))),
                              layers.get("created_by", [None] * len(layers)), layers["digest"])
    ]
    sizes = layers["size"].astype("Float64").fillna(0).astype(float) / _MIB
    ax.barh(range(len(layers)), sizes, color="#4c72b0")
    ax.set_yticks(range(len(layers)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("compressed size (MiB)")
    ax.set_title(title or f"layers of {layers.attrs.get('reference', 'the image')}")
    return ax


def tags_over_time(tags: pd.DataFrame, ax: Axes | None = None, *, annotate: int = 12) -> Axes:
    """Scatter: each tag of ``reg.tags(repo, details=True)`` at its ``created`` time and size (MiB).

    Tags sharing a digest are one point labelled with all their names; the ``annotate`` newest points
    get labels. Tags without a created time are left out (the title says how many).
    """
    if "created" not in tags.columns:
        raise ValueError("tags_over_time needs reg.tags(repo, details=True)")
    known = tags.dropna(subset=["created"])
    points = (known.groupby("digest", dropna=False)
              .agg(created=("created", "first"), size=("size", "first"),
                   tags=("tag", lambda s: ", ".join(sorted(s))))
              .sort_values("created"))
    ax = _axes(ax, (9, 4))
    sizes = points["size"].astype("Float64").fillna(0).astype(float) / _MIB
    ax.plot(points["created"].dt.tz_localize(None), sizes, "o", color="#dd8452")
    for (_, row), mib in list(zip(points.iterrows(), sizes))[-annotate:]:
        ax.annotate(_short(row["tags"], 24), (row["created"].tz_localize(None), mib), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")
    missing = len(tags) - len(known)
    repo = tags["repository"].iloc[0] if len(tags) else "?"
    ax.set_title(f"tags of {repo} over time" + (f" ({missing} without a created time)" if missing else ""))
    ax.set_xlabel("created (UTC)")
    ax.set_ylabel("size (MiB)")
    ax.figure.autofmt_xdate()
    return ax


def layer_matrix(registry: Registry, repository: str, tags: Iterable[str] | None = None, *,
                 platform: str | None = None) -> pd.DataFrame:
    """Which layer each tag uses: a boolean DataFrame, index = tag, columns = layer digest (in order of
    first appearance), ``attrs["sizes"]`` = digest → compressed size.

    ``tags`` default to all tags of ``repository``; tags sharing a manifest digest are fetched once
    (the registry facade caches by digest). Raises :class:`regexplore.RegistryError` like the calls it makes.
    """
    names = list(tags) if tags is not None else list(registry.tags(repository)["tag"])
    rows: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for tag in names:
        frame = registry.layers(f"{repository}:{tag}", platform=platform)
        rows[tag] = list(frame["digest"])
        for d, s in zip(frame["digest"], frame["size"]):
            if not pd.isna(s):
                sizes[d] = int(s)
    order: list[str] = []
    for digests in rows.values():
        order.extend(d for d in digests if d not in order)
    matrix = pd.DataFrame({d: [d in rows[t] for t in names] for d in order},
                          index=pd.Index(names, name="tag"), dtype=bool)
    matrix.attrs.update({"repository": repository, "sizes": sizes})
    return matrix


def shared_layers(matrix: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Draw :func:`layer_matrix`: a filled cell where a tag uses a layer; the column labels give the
    layer's short digest, size and how many tags share it."""
    import numpy as np

    ax = _axes(ax, (max(4, 0.6 * len(matrix.columns) + 2), 0.35 * max(len(matrix), 2) + 1.5))
    ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="Blues", vmin=0, vmax=1,
              interpolation="nearest")
    sizes = matrix.attrs.get("sizes", {})
    counts = matrix.sum(axis=0)
    ax.set_xticks(np.arange(len(matrix.columns)),
                  [f"{d[7:15]} {sizes.get(d, 0) / 1024:.0f}K ×{counts[d]}" for d in matrix.columns],
                  rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(matrix.index)), list(matrix.index), fontsize=8)
    ax.set_title(f"layers shared between tags of {matrix.attrs.get('repository', '')}".strip())
    return ax


def packages_per_layer(packages: pd.DataFrame, history: pd.DataFrame | None = None, ax: Axes | None = None) -> Axes:
    """Stacked horizontal bars: per layer (oldest on top), how many packages of each type it introduced.

    ``packages`` is ``reg.packages(ref)``; with ``history`` (``reg.history(ref)``) a layer is labelled by
    the step that made it (``layer_digest`` joined to ``layer``), else by its short digest. Raises
    ``ValueError`` for a frame without ``layer`` and ``type``.
    """
    if not {"layer", "type"} <= set(packages.columns):
        raise ValueError("packages_per_layer needs reg.packages(ref)")
    counts = packages.groupby(["layer", "type"], sort=False).size().unstack("type", fill_value=0)
    steps: dict[str, str] = {}
    if history is not None and "layer_digest" in history.columns:
        steps = {d: s for d, s in zip(history["layer_digest"], history["created_by"]) if isinstance(d, str)}
        order = [d for d in history["layer_digest"] if isinstance(d, str) and d in counts.index]
        counts = counts.loc[order + [d for d in counts.index if d not in order]]
    ax = _axes(ax, (9, 0.5 * max(len(counts), 2) + 1.2))
    left = pd.Series(0, index=counts.index)
    for kind in counts.columns:
        ax.barh(range(len(counts)), counts[kind], left=left, label=kind)
        left = left + counts[kind]
    ax.set_yticks(range(len(counts)), [_short(steps.get(d)) or str(d)[7:19] for d in counts.index])
    ax.invert_yaxis()
    ax.set_xlabel("packages introduced")
    ax.legend(title="type", fontsize=8)
    ax.set_title(f"packages per layer of {packages.attrs.get('reference', 'the image')}")
    return ax


def wasted_files(files: pd.DataFrame, ax: Axes | None = None, *, top: int = 15) -> Axes:
    """Horizontal bars: the ``top`` biggest wasted paths of ``reg.efficiency(ref).files`` (KiB of all copies),
    each labelled with how many layers wrote it. Raises ``ValueError`` for a frame without ``size``."""
    if not {"path", "count", "size"} <= set(files.columns):
        raise ValueError("wasted_files needs reg.efficiency(ref).files")
    shown = files.sort_values("size", ascending=False).head(top)
    ax = _axes(ax, (8, 0.4 * max(len(shown), 2) + 1))
    ax.barh(range(len(shown)), shown["size"].astype(float) / 1024, color="#c44e52")
    ax.set_yticks(range(len(shown)), [f"{_short(p, 56)} ×{n}" for p, n in zip(shown["path"], shown["count"])])
    ax.invert_yaxis()
    ax.set_xlabel("wasted (KiB, all copies)")
    ax.set_title(f"wasted files of {files.attrs.get('reference', 'the image')}"
                 + ("" if len(shown) else ": none"))
    return ax
