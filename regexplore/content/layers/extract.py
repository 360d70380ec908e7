"""Safe extraction of an image's layers into a folder: nothing is written outside it."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ...errors import UnsafeLayer
from .names import _is_aufs_meta, _whiteout_target, canonical_path
from .resolve import EscapesRoot, SymlinkLoop, resolve
from .rows import Entry, ExtractSummary
from .stream import LayerSource, _open_source
from .tarinfo import _LayerTarFile, _member_chunks, _members, _tar_errors, _to_entry


def _disk_step(folder: str, name: str) -> tuple[str, str | None]:
    """The resolver's view of the folder being written: ``name``'s real path in ``folder`` and, when it is
    a symlink, its target (a missing name is no link: later components may still be created)."""
    candidate = os.path.join(folder, name)
    try:
        st = os.lstat(candidate)
    except (FileNotFoundError, NotADirectoryError):
        return candidate, None
    return candidate, os.readlink(candidate) if stat.S_ISLNK(st.st_mode) else None


class _Extractor:
    """Writes layers into ``root`` (a real, absolute directory), never outside it."""

    def __init__(
        self,
        root: str,
        *,
        absolute_links: str,
        devices: str,
        keep_mode_bits: int,
        on_entry: Callable[[Entry], None] | None,
    ) -> None:
        self.root = root
        self.absolute_links = absolute_links
        self.devices = devices
        self.keep_mode_bits = keep_mode_bits
        self.on_entry = on_entry
        self.summary = ExtractSummary()
        self.dir_meta: dict[str, tuple[int, float]] = {}  # real path -> (mode, mtime), applied at the end
        self.symlinks: dict[str, str] = {}  # real path of each symlink we created -> its target in the tar
        self.touched: set[str] = set()  # canonical paths written by the current layer
        self.touched_parents: set[str] = set()

    # -- path resolution ------------------------------------------------------------------------
    def resolve(self, parts: list[str], *, follow_last: bool, entry: str) -> str:
        """Real path for ``parts`` under root, following the symlinks already on disk with the one resolver
        (:func:`~.resolve.resolve`) as the kernel will: absolute targets start at root. Unlike merge, a
        ``..`` above root is refused, not clamped: the OS would leave the folder there. Raises
        :class:`UnsafeLayer` naming ``entry`` for that and for a symlink loop."""
        try:
            names = resolve(parts, self.root, _disk_step, follow_last=follow_last, on_escape="raise")
        except EscapesRoot:
            raise UnsafeLayer(f"{entry}: path resolves outside the extraction folder", entry=entry) from None
        except SymlinkLoop:
            raise UnsafeLayer(f"{entry}: too many levels of symbolic links", entry=entry) from None
        return os.path.join(self.root, *names)

    def parent_dir(self, cparts: list[str], entry: str) -> str:
        """Resolve (and create) the parent directory of ``cparts``; returns its real path."""
        parent = self.resolve(cparts[:-1], follow_last=True, entry=entry)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        return parent

    # -- removal ----------------------------------------------------------------------------------
    @staticmethod
    def _remove(real: str) -> None:
        st = os.lstat(real)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(real, st.st_mode | 0o700)
            shutil.rmtree(real, onerror=_rmtree_fix_perms)
        else:
            os.unlink(real)

    def _prune(self, real: str, cpath: str) -> None:
        """Remove what is under directory ``real`` except what the current layer wrote."""
        for name in os.listdir(real):
            child_c = f"{cpath}/{name}" if cpath else name
            child = os.path.join(real, name)
            if child_c in self.touched or child_c in self.touched_parents:
                if os.path.isdir(child) and not os.path.islink(child):
                    self._prune(child, child_c)
            else:
                self._remove(child)

    def whiteout(self, cpath: str, kind: str, entry: str) -> None:
        parts = cpath.split("/")
        if kind == "opaque":
            dir_parts = parts[:-1]
            real = self.resolve(dir_parts, follow_last=True, entry=entry)  # "a/.wh..wh..opq", a -> b: clears b
            if os.path.isdir(real) and not os.path.islink(real):
                self._prune(real, "/".join(dir_parts))
        else:
            target_c = _whiteout_target(cpath, entry)
            target_parts = target_c.split("/")
            real = self.resolve(target_parts, follow_last=False, entry=entry)
            if os.path.lexists(real):
                if target_c in self.touched or target_c in self.touched_parents:
                    if os.path.isdir(real) and not os.path.islink(real):
                        self._prune(real, target_c)
                else:
                    self._remove(real)
        self.summary.whiteouts += 1

    # -- one member -------------------------------------------------------------------------------
    def member(self, ti: tarfile.TarInfo, tf: _LayerTarFile, layer: str | None) -> None:
        entry = _to_entry(ti, layer)
        name = ti.name
        if name.startswith("/"):
            raise UnsafeLayer(f"absolute path in layer: {name!r}", entry=name)
        raw_parts = name.split("/")
        if ".." in raw_parts:
            raise UnsafeLayer(f"'..' in layer path: {name!r}", entry=name)
        cpath = canonical_path(name)
        if not cpath:
            return  # the root itself ("./"): nothing to create
        if self.on_entry is not None:
            self.on_entry(entry)
        if _is_aufs_meta(cpath):
            self.summary.skipped.append(cpath)
            return
        if entry.whiteout is not None:
            self.whiteout(cpath, entry.whiteout, name)
            return
        if entry.type == "other":
            if self.devices == "skip":
                self.summary.skipped.append(cpath)
                return
            raise UnsafeLayer(f"device node or fifo in layer: {name!r}", entry=name)
        parts = cpath.split("/")
        parent = self.parent_dir(parts, name)
        real = os.path.join(parent, parts[-1])
        # What exists at the final component is replaced, never written through (it may be a symlink).
        if os.path.lexists(real) and not (entry.type == "dir" and os.path.isdir(real) and not os.path.islink(real)):
            self._remove(real)
        self.touched.add(cpath)
        for k in range(1, len(parts)):
            self.touched_parents.add("/".join(parts[:k]))

        if entry.type == "dir":
            os.makedirs(real, exist_ok=True)
            os.chmod(real, 0o700 | (entry.mode & self.keep_mode_bits))
            self.dir_meta[real] = (entry.mode & self.keep_mode_bits, entry.mtime)
            self.summary.dirs += 1
        elif entry.type == "file":
            self._write_file(real, tf, ti, entry)
        elif entry.type == "symlink":
            self._symlink(real, parts, entry.linkname, name)
            self.summary.symlinks += 1
        elif entry.type == "hardlink":
            self._hardlink(real, parts, entry.linkname, name)
            self.summary.hardlinks += 1

    def _write_file(self, real: str, tf: _LayerTarFile, ti: tarfile.TarInfo, entry: Entry) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(real, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in _member_chunks(ti, tf):
                out.write(chunk)
                self.summary.bytes_written += len(chunk)
        os.chmod(real, entry.mode & self.keep_mode_bits)
        os.utime(real, (entry.mtime, entry.mtime))
        self.summary.files += 1

    def _symlink(self, real: str, parts: list[str], target: str, name: str) -> None:
        """Make symlink ``real`` (archive path ``parts``) to ``target`` as the tar has it, rewritten or
        refused by ``absolute_links``. Raises UnsafeLayer when it would resolve outside root from there."""
        archived, link_dir = target, "/".join(parts[:-1])
        if target.startswith("/"):
            if self.absolute_links == "refuse":
                raise UnsafeLayer(f"absolute symlink {name!r} -> {target!r}", entry=name)
            if self.absolute_links == "relativize":
                inside = posixpath.normpath("/" + target.lstrip("/"))
                target = posixpath.relpath(inside, "/" + link_dir) if link_dir else inside.lstrip("/") or "."
        # The target, resolved from the link's folder over what is on disk, must stay inside root.
        check = target.split("/") if target.startswith("/") else [*parts[:-1], *target.split("/")]
        self.resolve(check, follow_last=True, entry=name)
        os.symlink(target, real)
        self.symlinks[real] = archived

    def _hardlink(self, real: str, parts: list[str], linkname: str, name: str) -> None:
        """Hard-link ``real`` to the existing non-directory ``linkname``. A hard link to a symlink shares
        its text, which may resolve elsewhere from another folder: it is made as a symlink with the same
        target as in the archive, checked (and rewritten) at its own place."""
        if linkname.startswith("/") or ".." in linkname.split("/"):
            raise UnsafeLayer(f"hardlink {name!r} points outside the layer: {linkname!r}", entry=name)
        target_parts = canonical_path(linkname).split("/")
        if target_parts == [""]:
            raise UnsafeLayer(f"hardlink {name!r} to the root", entry=name)
        source = self.resolve(target_parts, follow_last=False, entry=name)
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise UnsafeLayer(f"hardlink {name!r} to missing {linkname!r}", entry=name) from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"hardlink {name!r} to a directory {linkname!r}", entry=name)
        if stat.S_ISLNK(st.st_mode):
            self._symlink(real, parts, self.symlinks.get(source) or os.readlink(source), name)
            return
        os.link(source, real, follow_symlinks=False)

    def new_layer(self) -> None:
        self.touched = set()
        self.touched_parents = set()

    def finish(self) -> None:
        """Check every symlink still resolves inside root from where it lies (later layers may have changed
        what its target passes through), then apply directory modes and mtimes."""
        for real in self.symlinks:
            if not os.path.islink(real):
                continue  # removed by a later layer
            where = os.path.relpath(real, self.root).replace(os.sep, "/")
            try:
                self.resolve(where.split("/"), follow_last=True, entry=where)
            except UnsafeLayer:
                os.unlink(real)
                raise
        for real in sorted(self.dir_meta, key=len, reverse=True):
            mode, mtime = self.dir_meta[real]
            # a later layer may have turned a parent into a symlink: chmod/utime would follow it
            if os.path.realpath(real) == real and os.path.isdir(real):
                os.utime(real, (mtime, mtime))
                os.chmod(real, mode)


def _rmtree_fix_perms(func: Any, path: str, _exc: Any) -> None:
    parent = os.path.dirname(path)
    os.chmod(parent, os.lstat(parent).st_mode | 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, os.lstat(path).st_mode | 0o700)
    func(path)


def extract(
    layers_in_order: Iterable[LayerSource | tuple[str, LayerSource]],
    dest: str | os.PathLike[str],
    *,
    absolute_links: Literal["relativize", "refuse", "keep"] = "relativize",
    devices: Literal["refuse", "skip"] = "refuse",
    keep_mode_bits: int = 0o777,
    max_bytes: int | None = None,
    on_entry: Callable[[Entry], None] | None = None,
) -> ExtractSummary:
    """Extract an image's layers (base first) into ``dest``, applying whiteouts; nothing is written outside.

    Each item is a :data:`LayerSource` or a ``(layer_name, source)`` pair (the name is passed to
    ``on_entry`` rows). Every member is checked by this function, not by tarfile's filters:

    * absolute names and names with a ``..`` component → :class:`UnsafeLayer`;
    * parent directories are resolved over what is already on disk, following earlier symlinks; a
      resolution that climbs above ``dest`` → :class:`UnsafeLayer`;
    * whatever sits at the final path is removed first and files are created with ``O_EXCL|O_NOFOLLOW``,
      so nothing is written through a symlink or into a hardlinked inode;
    * symlinks whose target resolves outside ``dest`` → :class:`UnsafeLayer`; absolute targets are
      rewritten relative to the link (``"relativize"``, default; the tree stays self-contained),
      refused (``"refuse"``) or kept verbatim (``"keep"``: safe for this function, but the link points
      outside ``dest`` for other tools); all links are re-checked after the last layer;
    * hardlinks must name an existing non-directory inside ``dest`` → else :class:`UnsafeLayer`; a hard
      link to a symlink is made as a symlink with the archive's target, checked at its own place (the
      same text can lead elsewhere from another folder); every symlink is re-checked where it lies;
    * device nodes and fifos → :class:`UnsafeLayer` (or skipped with ``devices="skip"``);
    * ownership is not changed; modes are masked with ``keep_mode_bits`` (setuid/setgid/sticky dropped
      by default); directory modes and mtimes are set at the end.

    Returns an :class:`ExtractSummary`. Raises :class:`UnsafeLayer` naming the entry (``.entry``), plus
    what :func:`iter_entries` raises. On error, what was extracted so far stays in ``dest``.
    """
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    ex = _Extractor(
        root, absolute_links=absolute_links, devices=devices, keep_mode_bits=keep_mode_bits, on_entry=on_entry
    )
    for item in layers_in_order:
        layer_name: str | None = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str, type(None))):
            layer_name, item = item
        stream = _open_source(item, max_bytes)
        ex.new_layer()
        for ti, tf in _members(stream, drain=True):
            with _tar_errors():
                ex.member(ti, tf, layer_name)
    ex.finish()
    return ex.summary
