"""Wasted space, exactly as dive 0.13.1 computes it (``dive/filetree/efficiency.go``; inside.md B.1-B.4),
from the layers' entries.

dive builds one tree per layer from the tar entries (``path.Clean``; intermediate folders without an entry
get an empty payload; ``.wh..wh..*`` names are never added, so opaque whiteouts are ignored), then visits the
*leaves* of each layer's tree, children first, names sorted bytewise. A leaf adds its entry size to its
path's total; a whiteout leaf (``.wh.x``, counted at ``x``) adds the size of the whole subtree ``x`` was in
the layers below if that was a folder, else 0, and if ``x`` did not exist there, the rest of that layer is
not visited (dive's visitor error; the path keeps a minimum of -1). Then ``score = sum of each path's
smallest size / sum of all sizes`` (1.0 when that is 0), and the waste is every path met in two layers or
more, counting all its copies."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..layers import Entry

__all__ = ["Efficiency", "efficiency"]

_WH = ".wh."
_WH_META = ".wh..wh.."


class _Node:
    """A node of a dive tree: its payload (size, folder or not) and children by name."""

    __slots__ = ("children", "is_dir", "size")

    def __init__(self, size: int = 0, is_dir: bool = False) -> None:
        self.size, self.is_dir = size, is_dir
        self.children: dict[str, _Node] = {}


def _parts(path: str) -> list[str] | None:
    """dive's ``path.Clean`` + split of a tar name; None for names dive refuses (``.``)."""
    cleaned = posixpath.normpath(path or ".")
    if cleaned == ".":
        return None
    return [p for p in cleaned.strip("/").split("/") if p]


def _add(root: _Node, parts: list[str], size: int, is_dir: bool) -> None:
    """dive's ``AddPath``: create missing folders with an empty payload (stopping silently at a ``.wh..wh..``
    name), then set the payload of the last node (an existing node keeps its children)."""
    node = root
    for name in parts:
        child = node.children.get(name)
        if child is None:
            if name.startswith(_WH_META):
                return
            child = node.children[name] = _Node()
        node = child
    node.size, node.is_dir = size, is_dir


def _layer_tree(entries: Sequence[Entry]) -> tuple[_Node, int]:
    """A layer's dive tree and the sum of the sizes of the entries it holds."""
    root = _Node()
    total = 0
    for e in entries:
        parts = _parts(e.path)
        if parts is not None:
            _add(root, parts, e.size, e.type == "dir")
            total += e.size
    return root, total


def _walk(node: _Node, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], _Node]]:
    """Every node under ``node`` (not itself), children first, names sorted bytewise (Go's sort.Strings)."""
    stack: list[tuple[tuple[str, ...], _Node, bool]] = [(path, node, True)]
    while stack:
        here, n, expand = stack.pop()
        if not expand:
            yield here, n
            continue
        if here != path:
            stack.append((here, n, False))
        for name in sorted(n.children, key=_bytes, reverse=True):
            stack.append(((*here, name), n.children[name], True))


def _bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _shown(parts: tuple[str, ...]) -> tuple[str, ...]:
    """A node's path as dive reports it: the whiteout prefix dropped from the last name."""
    return (*parts[:-1], parts[-1].removeprefix(_WH)) if parts and parts[-1].startswith(_WH) else parts


def _find(root: _Node, parts: tuple[str, ...]) -> _Node | None:
    node: _Node | None = root
    for name in parts:
        node = node.children.get(name) if node is not None else None
    return node


def _subtree_size(node: _Node) -> int:
    return node.size + sum(n.size for _, n in _walk(node))


def _stack(lower: _Node, upper: _Node) -> None:
    """dive's ``FileTree.Stack``: every node of ``upper`` (children first) removes (whiteouts) or sets its
    path in ``lower``; an upper folder without an entry resets the lower payload to the empty one."""
    for parts, node in _walk(upper):
        if parts[-1].startswith(_WH):
            target = _shown(parts)
            parent = _find(lower, target[:-1])
            if parent is not None:
                parent.children.pop(target[-1], None)
        else:
            _add(lower, list(parts), node.size, node.is_dir)


@dataclass
class Efficiency:
    """dive's efficiency of an image. ``score``: dive's efficiencyScore; ``wasted_bytes``: its
    inefficientBytes (all copies of every path written in two layers or more); ``image_size``: the sum of
    the tar entry sizes of all layers; ``user_wasted_percent``: ``wasted_bytes`` over the bytes of the
    layers above the first (a ratio, 0-1 usually) -- for an image of one layer (nothing above the base;
    dive divides by zero there) it is 0.0 when nothing is wasted and ``inf`` otherwise. ``wasted``: the
    wasted paths as ``(path, count, size)``, biggest first."""

    score: float
    wasted_bytes: int
    image_size: int
    user_wasted_percent: float
    wasted: list[tuple[str, int, int]] = field(default_factory=list)


def efficiency(layers: Sequence[Sequence[Entry]]) -> Efficiency:
    """dive 0.13.1's efficiency of the image whose layers (oldest first) have these entries."""
    trees, sizes = zip(*map(_layer_tree, layers)) if layers else ((), ())
    totals: dict[tuple[str, ...], list[int]] = {}  # path -> [cumulative, min, copies]
    # dive's StackTreeRange starts from a copy of layer 0 and stacks every layer on it, layer 0 too; layer 0's
    # whiteouts look in layer 0 itself. Nothing reads the stack after the last layer, so a one-layer image
    # needs no copy and no stacking.
    stacked = trees[0] if trees else _Node()
    for i, tree in enumerate(trees):
        below = stacked
        for parts, node in _walk(tree):
            if node.children:
                continue
            path = _shown(parts)
            data = totals.setdefault(path, [0, -1, 0])
            size = node.size
            if parts[-1].startswith(_WH):
                previous = _find(below, path)
                if previous is None:
                    break  # dive: "path does not exist", the rest of this layer is not visited
                size = _subtree_size(previous) if previous.is_dir else 0
            data[0] += size
            data[1] = size if data[1] < 0 or size < data[1] else data[1]
            data[2] += 1
        if i + 1 < len(trees):
            if i == 0:
                stacked = _copy(trees[0])
            _stack(stacked, tree)
    return _result(list(sizes), totals)


def _copy(node: _Node) -> _Node:
    """A deep copy of the tree under ``node``, with an explicit stack (a path of thousands of components, which
    a PAX name allows, would overflow Python's recursion limit)."""
    root = _Node(node.size, node.is_dir)
    todo = [(node, root)]
    while todo:
        source, target = todo.pop()
        for name, child in source.children.items():
            target.children[name] = copy = _Node(child.size, child.is_dir)
            todo.append((child, copy))
    return root


def _result(sizes: list[int], totals: dict[tuple[str, ...], list[int]]) -> Efficiency:
    """The :class:`Efficiency` from each layer's size (:func:`_layer_tree`) and the per-path totals."""
    lowest = sum(v[1] for v in totals.values())
    discovered = sum(v[0] for v in totals.values())
    wasted = sorted((("/".join(p), v[2], v[0]) for p, v in totals.items() if v[2] >= 2), key=lambda f: -f[2])
    wasted_bytes = sum(f[2] for f in wasted)
    user = sum(sizes[1:])
    ratio = wasted_bytes / user if user else (0.0 if wasted_bytes == 0 else math.inf)
    return Efficiency(score=lowest / discovered if discovered else 1.0, wasted_bytes=wasted_bytes,
                      image_size=sum(sizes), user_wasted_percent=ratio, wasted=wasted)
