"""The one path resolver: a path inside the image root, its symlinks followed, like a chroot.

:func:`resolve` walks a path component by component over any tree, asking a ``step`` function what each
component is: :func:`~.tree.merge` walks its in-memory tree of rows, :func:`~.extract.extract` the folder
it writes (``lstat`` / ``readlink``), and :func:`join_link` (used by :func:`~.tree.read_file`, which opens
layers lazily and so has no tree to walk) walks no tree at all. The rules are the kernel's, inside a root:

* a symlink met on the way (and the last component with ``follow_last``) is replaced by its target: an
  absolute target starts again at the root, a relative one from the folder holding the link;
* ``..`` goes up one component *after* what precedes it was resolved (so ``l/..`` with ``l -> a/b`` is
  ``a``); at the root it stays at the root (``on_escape="clamp"``, chroot semantics: merge, read_file),
  or raises :class:`EscapesRoot` (``on_escape="raise"``: extract refuses what would leave its folder);
* more than :data:`MAX_SYMLINK_HOPS` links raises :class:`SymlinkLoop`;
* empty and ``.`` components are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

__all__ = ["MAX_SYMLINK_HOPS", "EscapesRoot", "ResolveError", "Step", "SymlinkLoop", "join_link", "resolve"]

#: Most symlinks followed while resolving one path (Linux's limit).
MAX_SYMLINK_HOPS = 40

N = TypeVar("N")
#: ``step(node, name) -> (child, link)``: the node of ``name`` inside folder ``node`` (whatever the tree
#: uses: a tree node, a real path; a missing one too, since later components may still be named), and
#: the symlink's target text when ``name`` is a symlink, else None.
Step = Callable[[N, str], "tuple[N, str | None]"]


class ResolveError(Exception):
    """A path that cannot be resolved inside the root."""


class SymlinkLoop(ResolveError):
    """More than :data:`MAX_SYMLINK_HOPS` symlinks on the way (a loop, most likely)."""


class EscapesRoot(ResolveError):
    """A ``..`` that would climb above the root (only with ``on_escape="raise"``)."""


def resolve(
    parts: Sequence[str],
    root: N,
    step: Step[N],
    *,
    follow_last: bool = False,
    on_escape: Literal["clamp", "raise"] = "clamp",
    literal_dotdot: bool = False,
) -> list[str]:
    """Resolve the components ``parts`` (relative to the root) over the tree ``step`` describes.

    ``root`` is the root's node. ``follow_last`` follows a symlink in the last component too.
    ``literal_dotdot`` treats a ``..`` *of parts* as a plain name (a listing's key, see
    :func:`~.names.canonical_path`); a ``..`` of a link target always goes up.

    Returns the resolved components (``[]`` for the root). Raises :class:`SymlinkLoop` past
    :data:`MAX_SYMLINK_HOPS` links and, with ``on_escape="raise"``, :class:`EscapesRoot`.
    """
    todo: list[tuple[str, bool]] = [(p, literal_dotdot) for p in reversed(parts)]  # (name, ".." is a name)
    names: list[str] = []
    nodes: list[N] = [root]  # nodes[k] is the folder holding names[k]; nodes[-1] the current folder
    hops = 0
    while todo:
        part, literal = todo.pop()
        if part in ("", "."):
            continue
        if part == ".." and not literal:
            if names:
                names.pop()
                nodes.pop()
            elif on_escape == "raise":
                raise EscapesRoot("path resolves outside the root")
            continue
        child, link = step(nodes[-1], part)
        if link is not None and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise SymlinkLoop("too many levels of symbolic links")
            if link.startswith("/"):
                del names[:], nodes[1:]
            todo.extend((p, False) for p in reversed(link.split("/")))
            continue
        names.append(part)
        nodes.append(child)
    return names


def _no_links(node: None, name: str) -> tuple[None, None]:
    return None, None


def join_link(link_dir: str, target: str, rest: str = "") -> str:
    """The path symlink ``link_dir/<name> -> target`` leads to, plus ``rest`` after it, inside the root,
    lexically (no further symlink is looked at: :func:`~.tree.read_file` follows those on its next hop).
    Absolute targets start at the root, ``..`` stops at the root.

    Returns the canonical path (no leading ``/``; ``""`` is the root). Raises nothing.
    """
    base = [] if target.startswith("/") else link_dir.split("/")
    return "/".join(resolve([*base, *target.split("/"), *rest.split("/")], None, _no_links))
