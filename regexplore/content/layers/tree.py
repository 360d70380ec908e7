"""The image's final filesystem from its layers: :func:`merge` (all rows), :func:`diff` (two file lists),
:func:`read_file` (one file, opening as few layers as possible)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import ResponseTooLarge
from .names import _is_aufs_meta, _whiteout_target, canonical_path
from .resolve import MAX_SYMLINK_HOPS, SymlinkLoop, join_link, resolve
from .rows import DiffRow, Entry
from .stream import (
    DEFAULT_FILE_CAP,
    MAX_FILE_BYTES_ENV,
    LayerSource,
    LayerStream,
    _cap_from_env,
    _open_source,
)
from .tarinfo import _LayerTarFile, _member_chunks, _members, _tar_errors, _to_entry


# -------------------------------------------------------------------------------------------- merge
class _Node:
    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.children: dict[str, _Node] = {}


def _step(node: _Node | None, name: str) -> tuple[_Node | None, str | None]:
    """The resolver's view of the tree: ``name``'s node in ``node`` and its link target if a symlink."""
    child = node.children.get(name) if node is not None else None
    entry = child.entry if child is not None else None
    return child, entry.linkname if entry is not None and entry.type == "symlink" else None


class _Tree:
    """The filesystem merge builds: a tree of :class:`_Node` keyed by canonical path components."""

    def __init__(self) -> None:
        self.root = _Node()

    def resolve(self, parts: list[str], follow_last: bool = False) -> list[str]:
        """``parts`` with every symlinked parent (and the last component with ``follow_last``) followed
        (``..`` of a row's own path is a name, as in :func:`canonical_path`); ``parts`` unchanged on a
        loop, or when only the last component is followed into and it would name the root itself."""
        try:
            done = resolve(parts, self.root, _step, follow_last=follow_last, literal_dotdot=True)
        except SymlinkLoop:
            return parts
        return done if done or follow_last else parts

    def find(self, parts: list[str], create: bool) -> _Node | None:
        """The node at ``parts`` (no symlink followed); created with ``create``, else None if absent."""
        node = self.root
        for part in parts:
            nxt = node.children.get(part)
            if nxt is None:
                if not create:
                    return None
                nxt = node.children[part] = _Node()
            node = nxt
        return node

    def whiteout(self, cpath: str, row: Entry) -> None:
        """Apply whiteout ``row`` (canonical path ``cpath``) to what the lower layers made."""
        parts = cpath.split("/") if cpath else []
        if row.whiteout == "opaque":
            node = self.find(self.resolve(parts[:-1], follow_last=True), create=False)
            if node is not None:
                node.children.clear()
            return
        target = self.resolve(_whiteout_target(cpath, row.path).split("/"))
        parent = self.find(target[:-1], create=False)
        if parent is not None:
            parent.children.pop(target[-1], None)

    def put(self, cpath: str, row: Entry) -> None:
        """Place ``row`` (canonical path ``cpath``) at its resolved path, replacing what is there."""
        given = cpath.split("/")
        parts = self.resolve(given)
        if parts != given:
            row = replace(row, path="/".join(parts))
        if row.type == "hardlink" and row.content is None:
            source = self.find(self.resolve(canonical_path(row.linkname).split("/")), create=False)
            if source is not None and source.entry is not None and source.entry.content:
                row = replace(row, content=source.entry.content)
        node = self.find(parts, create=True)
        assert node is not None
        if row.type != "dir":
            node.children.clear()
        node.entry = row

    def rows(self) -> list[Entry]:
        """Every entry of the tree, sorted by canonical path."""
        out: list[Entry] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            out.extend(child.entry for child in node.children.values() if child.entry is not None)
            stack.extend(node.children.values())
        out.sort(key=lambda e: canonical_path(e.path))
        return out


def _group_layers(layers_rows: Iterable[Any]) -> list[list[Entry]]:
    """One list of rows per layer: the iterables as given, or runs of flat rows with the same ``layer``."""
    groups: list[list[Entry]] = []
    last_layer: object = object()
    for item in layers_rows:
        if isinstance(item, Entry):
            if not groups or item.layer != last_layer:
                groups.append([])
                last_layer = item.layer
            groups[-1].append(item)
        else:
            groups.append(list(item))
            last_layer = object()
    return groups


def merge(layers_rows: Iterable[Iterable[Entry]] | Iterable[Entry]) -> list[Entry]:
    """Apply layers in order (base first) and return the final filesystem, sorted by path.

    ``layers_rows`` is either one iterable of rows per layer, or one flat iterable of rows where
    consecutive rows with the same ``layer`` form a layer. Rules (OCI image spec, "Whiteouts"):

    * whiteouts apply only to *lower* layers: in each layer, whiteouts are applied first, then entries;
    * ``d/.wh.x`` removes ``d/x`` and everything under it; ``d/.wh..wh..opq`` removes everything under ``d``
      (``d`` itself stays);
    * a later entry replaces an earlier one at the same path; a non-directory replacing a directory also
      removes what was under it; a directory over a directory keeps the children;
    * a parent directory that is a symlink in the tree so far is followed, inside the image root, by the
      resolver :func:`extract` uses (:func:`~.resolve.resolve`; ``..`` stops at the root here, where
      extract refuses it): ``a -> b`` then ``a/x`` lands at ``b/x``, and that row's ``path`` is the
      resolved one (a layer's whiteouts see the tree before that layer's own entries,
      while :func:`extract` goes in archive order: they differ only for a tar that makes a link and
      whites out through it in the same layer);
    * a hardlink row takes the ``content`` digest of the file its target was when it was applied;
    * whiteout markers and AUFS metadata (``.wh..wh.plnk`` ...) never appear in the result.

    Paths are compared by :func:`canonical_path` (rows keep their own ``path`` unless a symlinked parent
    moved them). Returns a list of :class:`Entry` whose ``layer`` tells which layer provided each path.
    Raises :class:`UnsafeLayer` for a whiteout name that names no file (``.wh..``).
    """
    tree = _Tree()
    for rows in _group_layers(layers_rows):
        keyed = [(canonical_path(r.path), r) for r in rows]
        for cpath, row in keyed:
            if row.whiteout is not None:
                tree.whiteout(cpath, row)
        for cpath, row in keyed:
            if row.whiteout is None and cpath and not _is_aufs_meta(cpath):
                tree.put(cpath, row)
    return tree.rows()


# --------------------------------------------------------------------------------------------- diff
#: Attributes compared by :func:`diff` to call a path ``modified``.
DIFF_FIELDS: tuple[str, ...] = ("type", "size", "mode", "uid", "gid", "linkname", "mtime")


def diff(
    rows_a: Iterable[Entry], rows_b: Iterable[Entry], *, compare: Collection[str] = DIFF_FIELDS
) -> list[DiffRow]:
    """Compare two file lists (usually two :func:`merge` results) and return what changed, by path.

    A path only in ``rows_b`` is ``added``, only in ``rows_a`` ``removed``; present in both, it is
    ``modified`` when any attribute in ``compare`` differs (default: type, size, mode, uid, gid, linkname,
    mtime), or when both sides carry a content digest (``hash_files=True``) and they differ (pass
    ``compare=DIFF_FIELDS[:-1]`` to ignore mtimes of rebuilt images). Paths are matched by
    :func:`canonical_path`; if a side lists a path twice, its last row counts. Returns rows sorted by path.
    Raises ``ValueError`` for an unknown attribute name in ``compare``.
    """
    unknown = set(compare) - set(Entry.__dataclass_fields__) - {"path", "layer"}
    if unknown:
        raise ValueError(f"unknown Entry attributes in compare: {sorted(unknown)}")
    a = {canonical_path(r.path): r for r in rows_a}
    b = {canonical_path(r.path): r for r in rows_b}
    out: list[DiffRow] = []
    for path in sorted(a.keys() | b.keys()):
        ra, rb = a.get(path), b.get(path)
        if ra is None:
            assert rb is not None
            out.append(DiffRow(path, "added", None, rb.size, ""))
        elif rb is None:
            out.append(DiffRow(path, "removed", ra.size, None, ""))
        else:
            changed = [f for f in compare if getattr(ra, f) != getattr(rb, f)]
            if ra.content and rb.content and ra.content != rb.content:
                changed.append("content")  # listed with hash_files=True: same metadata, other bytes
            if changed:
                out.append(DiffRow(path, "modified", ra.size, rb.size, ",".join(changed)))
    return out


# ---------------------------------------------------------------------------------------- read_file
@dataclass
class _LayerIndex:
    """What one layer says about paths (canonical keys): entries, whiteouts, opaque dirs."""

    #: every entry of a path as ``(position in the tar, entry)``, in tar order (the last one wins)
    versions: dict[str, list[tuple[int, Entry]]] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)  # paths removed from lower layers
    opaque: set[str] = field(default_factory=set)  # dirs whose lower contents are hidden
    captured: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # (position, file bytes) read

    def entry(self, path: str, before: int | None = None) -> tuple[int, Entry] | None:
        """``(position, entry)`` of the last entry for ``path`` (written before ``before`` if given)."""
        for position, entry in reversed(self.versions.get(path, ())):
            if before is None or position < before:
                return position, entry
        return None


def _read_capped(ti: tarfile.TarInfo, tf: _LayerTarFile, path: str, cap: int) -> bytes:
    """The content of regular file ``ti`` if its size (a sparse file's full size) is at most ``cap``.
    Memory stays at about the file's size (``BytesIO.getvalue`` hands over its buffer, no second copy).
    Raises :class:`ResponseTooLarge` naming ``path``."""
    if ti.size > cap:
        raise ResponseTooLarge(f"{path}: {ti.size} bytes, over the {cap}-byte cap on a file read "
                               f"(raise it with max_bytes= or {MAX_FILE_BYTES_ENV})")
    out = io.BytesIO()
    with _tar_errors():
        for chunk in _member_chunks(ti, tf):
            out.write(chunk)
    return out.getvalue()


def _scan_layer(stream: LayerStream, want: str, file_cap: int, before: int | None = None) -> _LayerIndex:
    """Index one layer, capturing the bytes of the last regular file ``want`` (before position ``before``).

    The layer is read to the end of its input (drained), so a digest checked while it streams is checked
    before anything read from it is used: :class:`~regexplore.errors.DigestMismatch` is raised here."""
    index = _LayerIndex()
    for position, (ti, tf) in enumerate(_members(stream, drain=True)):
        entry = _to_entry(ti, None)
        cpath = canonical_path(entry.path)
        if entry.whiteout == "opaque":
            index.opaque.add(cpath.rpartition("/")[0])
        elif entry.whiteout == "file":
            index.whiteouts.add(_whiteout_target(cpath, entry.path))
        else:
            index.versions.setdefault(cpath, []).append((position, entry))
            if cpath == want and ti.isreg() and (before is None or position < before):
                index.captured[cpath] = (position, _read_capped(ti, tf, want, file_cap))
    return index


def read_file(
    layers_newest_first: Sequence[LayerSource],
    path: str | bytes,
    *,
    follow_symlinks: bool = True,
    max_bytes: int | None = None,
    max_file_bytes: int | None = None,
) -> bytes:
    """Return the bytes of ``path`` in the image's final filesystem, opening as few layers as possible.

    ``layers_newest_first`` holds one :data:`LayerSource` per layer, **top layer first**; pass callables
    (``lambda: blobs.stream(digest)``) so a layer is only opened when it is needed. Layers are scanned from
    the top; the search stops at the first layer that has the path, whites it (or a parent) out, or makes
    a parent opaque. Symlinks (also in parent directories) are resolved inside the image root, like a
    chroot. A hardlink reads the file its target was when the hardlink's layer was applied (the tar
    extraction of layer.md's "Applying Changesets": the link shares that inode, so later layers that
    replace or white out the target path do not change it). Each layer is opened at most once per lookup,
    plus one re-open when a link leads to a file in a layer already scanned. Every layer opened is read to
    the end of its blob, so its digest is verified before any of its bytes are returned.

    Not seen here, as this reads only the layers it needs and so has no tree to resolve over (the one
    resolver, :func:`~.resolve.resolve`, used by :func:`merge` and :func:`extract`, which read every layer):
    what a layer does *through* a directory symlink of a lower layer (``a -> b`` below; ``a/x``, ``a/.wh.x``
    or ``a/.wh..wh..opq`` above), and a ``..`` right after a symlinked folder inside a link's target (each
    hop is joined by :func:`~.resolve.join_link`, lexically; symlinks in the result are followed on the
    next hop). Hand-made tars only: image builders write real paths.

    ``path`` is text, or the name's exact bytes (:func:`raw_path` of a name a table shows escaped).
    ``max_file_bytes`` caps the size of the file returned (it is held in memory; a sparse file counts
    with its holes); None: ``$REGEXPLORE_MAX_FILE_BYTES`` or :data:`DEFAULT_FILE_CAP` (64 MiB).
    ``max_bytes`` caps each layer's decompressed bytes, as in :func:`open_layer_stream`.

    Returns the file's bytes. Raises ``FileNotFoundError`` (absent or whited out), ``IsADirectoryError``,
    ``NotADirectoryError``, ``OSError`` (too many symlinks, special file), :class:`ResponseTooLarge`
    (over ``max_file_bytes``, before any of it is read), ``ValueError`` (a bad cap), plus what
    :func:`iter_entries` raises.
    """
    file_cap = max_file_bytes
    if file_cap is None:
        file_cap = _cap_from_env(MAX_FILE_BYTES_ENV, DEFAULT_FILE_CAP)
    if file_cap <= 0:
        raise ValueError(f"max_file_bytes must be positive, got {file_cap}")
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")  # as tar names are decoded
    lookup = _Lookup(layers_newest_first, path, follow_symlinks=follow_symlinks, max_bytes=max_bytes,
                     file_cap=file_cap)
    # Where the lookup starts: the top layer, or after a hardlink the hardlink's own layer, seeing only
    # the entries written before the hardlink (``before``, a position in that layer's tar).
    want, start, before = canonical_path(path), 0, None
    for _hop in range(MAX_SYMLINK_HOPS + 1):
        if not want:
            raise IsADirectoryError(f"{path}: is the root directory")
        redirect, found = lookup.search(want, start, before)
        if found is None:
            assert redirect is not None
            want, start, before = redirect, 0, None  # a symlink resolves in the final filesystem
            continue
        step = lookup.follow(found, want)
        if isinstance(step, bytes):
            return step
        want, start, before = step
    raise OSError(f"{path}: too many levels of symbolic links")


#: where a path was found: (layer, position in its tar, entry)
_Found = tuple[int, int, Entry]


class _Lookup:
    """The state of one :func:`read_file` call: its layers, indexed lazily (each scanned once, for the path
    wanted when it was opened), and its caps."""

    def __init__(self, sources: Sequence[LayerSource], path: str, *, follow_symlinks: bool,
                 max_bytes: int | None, file_cap: int) -> None:
        self.sources = list(sources)
        self.indexes: list[_LayerIndex | None] = [None] * len(self.sources)
        self.path = path  # as the caller named it, for messages
        self.follow_symlinks = follow_symlinks
        self.max_bytes = max_bytes
        self.file_cap = file_cap

    def index_of(self, i: int, target: str) -> _LayerIndex:
        """Layer ``i``'s index, scanned now (capturing ``target``'s bytes) unless it was already."""
        idx = self.indexes[i]
        if idx is None:
            idx = self.indexes[i] = _scan_layer(_open_source(self.sources[i], self.max_bytes), target, self.file_cap)
        return idx

    def search(self, want: str, start: int, before: int | None) -> tuple[str | None, _Found | None]:
        """Scan the layers from ``start`` for ``want``: ``(redirect, None)`` when a parent of it is a symlink,
        ``(None, found)`` at the first layer with an entry for it. Raises ``FileNotFoundError`` (whited out,
        hidden by an opaque parent, in no layer) and ``NotADirectoryError`` (a parent is another kind)."""
        parts = want.split("/")
        ancestors = ["/".join(parts[:k]) for k in range(1, len(parts))]
        for i in range(start, len(self.sources)):
            idx = self.index_of(i, want)
            limit = before if i == start else None  # in a hardlink's layer: what was there before it
            redirect = self._through_parent(idx, parts, limit)
            if redirect is not None:
                return redirect, None
            hit = idx.entry(want, limit)
            if hit is not None:
                return None, (i, *hit)
            hidden = want in idx.whiteouts or any(a in idx.whiteouts for a in ancestors)
            if hidden or any(a in idx.opaque for a in ["", *ancestors]):
                raise FileNotFoundError(f"{self.path}: removed by a whiteout in layer {i} (0 = top)")
        raise FileNotFoundError(f"{self.path}: not in any layer")

    def _through_parent(self, idx: _LayerIndex, parts: list[str], limit: int | None) -> str | None:
        """Where the path ``parts`` leads when this layer replaced a parent of it by a symlink (one hop,
        :func:`~.resolve.join_link`); None when no parent is a non-directory here. Raises
        ``NotADirectoryError`` for a parent replaced by another non-directory."""
        for k in range(1, len(parts)):
            anc = "/".join(parts[:k])
            hit = idx.entry(anc, limit)
            if hit is None or hit[1].type == "dir":
                continue
            if hit[1].type == "symlink":
                return join_link(anc.rpartition("/")[0], hit[1].linkname, "/".join(parts[k:]))
            raise NotADirectoryError(f"{self.path}: {anc} is not a directory in the image")
        return None

    def follow(self, found: _Found, want: str) -> bytes | tuple[str, int, int | None]:
        """The bytes of the file ``found`` is, or where its link leads: ``(path, start layer, before)``.
        Raises ``IsADirectoryError``, ``OSError`` (a symlink with ``follow_symlinks=False``, a device)."""
        i, position, entry = found
        if entry.type == "file":
            return self.content(i, position, want)
        if entry.type == "dir":
            raise IsADirectoryError(f"{self.path}: is a directory")
        if entry.type == "hardlink":
            return canonical_path(entry.linkname), i, position
        if entry.type != "symlink":
            raise OSError(f"{self.path}: is a special file (device or fifo)")
        if not self.follow_symlinks:
            raise OSError(f"{self.path}: is a symlink to {entry.linkname!r} (follow_symlinks=False)")
        return join_link(want.rpartition("/")[0], entry.linkname), 0, None

    def content(self, i: int, position: int, want: str) -> bytes:
        """The bytes of file ``want`` written at ``position`` in layer ``i`` (the layer is opened once more
        when it was scanned for another path)."""
        idx = self.index_of(i, want)
        if idx.captured.get(want, (None,))[0] != position:
            idx = _scan_layer(_open_source(self.sources[i], self.max_bytes), want, self.file_cap, position + 1)
            self.indexes[i] = idx
        return idx.captured[want][1]
