"""OCI image layouts: the one writer (:func:`write_blob`, :func:`write_index`; ``save`` writes one from a
registry, a folder or a ``.tar`` of it, and the sandbox seed and ``push`` of files use it too);
:class:`LayoutSource` reads one (folder or tar, members streamed) for ``push``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import RegistryError, ResponseTooLarge, load_json
from ..model.oci import MAX_INDEX_DEPTH, OCI_INDEX, Manifest, choose_platform
from ..reference import ImageRef
from .cache import cache_dir, split_digest, verified_file
from .download import Target, fetch_targets
from .partials import atomic_write, fsync_dir

__all__ = ["LAYOUT_VERSION", "REF_NAME", "LayoutSource", "layout_blob_path", "layout_entry", "save", "write_blob",
           "write_index"]

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"


def _collect(reg: Any, repo: str, m: Manifest, manifests: dict[str, Manifest], blobs: dict[str, Target],
             depth: int = 0) -> None:
    """Every manifest and blob reachable from ``m`` (index children included), each manifest visited
    once however often it is listed. An index is first resolved within the bounds of
    ``Registry._flat_index`` (:class:`ResponseTooLarge` past them); one nested more than
    ``MAX_INDEX_DEPTH`` levels down raises :class:`ResponseTooLarge` (a layout needs all of it)."""
    manifests[m.digest] = m
    if m.is_index:
        if depth == 0:
            reg._flat_index(repo, m)
        if depth > MAX_INDEX_DEPTH:
            raise ResponseTooLarge(f"index {repo}@{m.digest} is nested more than {MAX_INDEX_DEPTH} levels deep")
        for e in m.json.get("manifests") or []:
            if e["digest"] not in manifests:
                child = reg.manifest(ImageRef(reg.name, repo, None, e["digest"]))
                _collect(reg, repo, child, manifests, blobs, depth + 1)
        return
    if m.is_schema1:
        raise RegistryError("schema1 images cannot be written as an OCI layout")
    cd = m.config_descriptor
    if cd and cd.get("digest"):
        blobs.setdefault(cd["digest"], Target(repo, cd["digest"], cd.get("size"), "config"))
    for i, d in enumerate(m.layer_descriptors):
        if d.get("urls"):  # foreign / non-distributable layers live elsewhere
            continue
        blobs.setdefault(d["digest"], Target(repo, d["digest"], d.get("size"), f"layer {i}"))


def layout_blob_path(root: Path, digest: str) -> Path:
    """Where the blob ``digest`` lives in the layout at ``root`` (``blobs/<alg>/<hex>``)."""
    alg, hexpart = split_digest(digest)
    return root / "blobs" / alg / hexpart


def write_blob(root: Path, digest: str, data: bytes) -> None:
    """Put ``data`` (which hashes to ``digest``) at its place in the layout at ``root``, unless a
    verified copy is there already; whatever else sits there (a planted symlink, other bytes) is
    replaced atomically. Returns None; raises ``OSError``."""
    p = layout_blob_path(root, digest)
    p.parent.mkdir(parents=True, exist_ok=True)
    if verified_file(p, digest, len(data)) is None:
        atomic_write(p, data)


def layout_entry(media_type: str, digest: str, size: int, tag: str | None,
                 platform: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``index.json`` descriptor of one image: its ``platform`` when given, the tag in
    ``org.opencontainers.image.ref.name`` when there is one."""
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if platform:
        desc["platform"] = platform
    if tag:
        desc["annotations"] = {REF_NAME: tag}
    return desc


def _kept_entries(index_path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of an existing ``index.json`` that ``new`` does not replace (the same tag, or
    the same digest untagged); none if there is no readable index."""
    if not index_path.exists():
        return []
    tags = {(d.get("annotations") or {}).get(REF_NAME) for d in new} - {None}
    untagged = {d["digest"] for d in new if not (d.get("annotations") or {}).get(REF_NAME)}
    try:
        old = load_json(index_path.read_bytes(), str(index_path))
        return [e for e in old.get("manifests") or []
                if (e.get("annotations") or {}).get(REF_NAME) not in tags
                and not (e.get("digest") in untagged and not e.get("annotations"))]
    except (ValueError, AttributeError, RegistryError):
        return []


def write_index(root: Path, entries: list[dict[str, Any]]) -> None:
    """Finish the layout at ``root`` (its blobs in place): ``oci-layout`` and ``index.json`` with
    ``entries`` (see :func:`layout_entry`) added after the existing entries they do not replace.
    The one place OCI layouts get their top files (``save``, ``push`` of files, the sandbox seed).
    Returns None; raises ``OSError``."""
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / "oci-layout", json.dumps(LAYOUT_VERSION).encode())
    index_path = root / "index.json"
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": _kept_entries(index_path, entries) + entries}
    atomic_write(index_path, json.dumps(index, indent=2).encode())
    fsync_dir(root)


def _write_layout(reg: Any, r: ImageRef, root: Path, platform: str | None, progress: Any, parallel: int,
                  cdir: Path | None) -> None:
    """Write ``r`` (or its ``platform`` image) into the layout at ``root``: blobs through the
    verified download path, then its manifests, then the index entry. Returns None."""
    top = reg.manifest(r)
    chosen_platform = None
    if top.is_index and platform is not None:
        chosen = choose_platform(reg._flat_index(r.repository, top), platform)
        top = reg.manifest(r.with_digest(chosen["digest"]))
        chosen_platform = chosen.get("platform")
    manifests: dict[str, Manifest] = {}
    blobs: dict[str, Target] = {}
    _collect(reg, r.repository, top, manifests, blobs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    fetch_targets(reg, blobs.values(), lambda digest: layout_blob_path(root, digest), cdir, progress, parallel,
                  f"save {r.familiar()}")
    for m in manifests.values():
        write_blob(root, m.digest, m.raw)
    write_index(root, [layout_entry(top.media_type, top.digest, top.size, r.tag, chosen_platform)])


def save(reg: Any, ref: str | ImageRef, path: str | os.PathLike[str], format: str = "oci",
         platform: str | None = None, *, progress: Any = True, parallel: int = 4,
         cache: bool | str | os.PathLike[str] | None = None) -> str:
    """Write ``ref`` as an OCI image layout that ``skopeo copy oci:PATH[:TAG] …`` accepts.

    ``path`` is a folder (created; an existing layout gets the entry added or replaced) or, when
    it ends in ``.tar``, a tar archive of the layout (``oci-archive:``). With an index and no
    ``platform`` the whole index (every platform, attestations included) is written; with a
    ``platform`` only that image. ``index.json`` names the tag in
    ``org.opencontainers.image.ref.name``. Blobs come through the verified download path (and
    the cache). Returns ``str(path)``.

    Raises ``ValueError`` for a ``format`` other than ``"oci"``, and what :func:`download` raises.
    A failure leaves no ``index.json`` (folder) or no archive (``.tar``) naming missing blobs.
    """
    if format != "oci":
        raise ValueError(f"unsupported format {format!r}: only 'oci' (an OCI image layout) is written")
    r: ImageRef = reg.ref(ref)
    cdir = cache_dir(cache)
    out = Path(path).expanduser()
    if out.suffix != ".tar":
        _write_layout(reg, r, out, platform, progress, parallel, cdir)
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp_tar = out.with_name(out.name + ".partial")
    try:
        _write_layout(reg, r, stage, platform, progress, parallel, cdir)
        with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tf:
            for name in ("oci-layout", "index.json"):
                tf.add(stage / name, arcname=name, recursive=False)
            for p in sorted((stage / "blobs").rglob("*")):
                if p.is_file() and not p.name.endswith(".partial"):
                    tf.add(p, arcname=str(p.relative_to(stage)), recursive=False)
        with open(tmp_tar, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_tar, out)
        fsync_dir(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_tar.unlink()
        shutil.rmtree(stage, ignore_errors=True)
    return str(out)




class LayoutSource:
    """Read access to an OCI layout: a folder or a tar archive (members streamed, not extracted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            self.tar = tarfile.open(path, "r:")  # noqa: SIM115 (held open, closed by close())
            for m in self.tar.getmembers():
                if m.isfile():
                    self.members[m.name.removeprefix("./")] = m
        elif not path.is_dir():
            raise FileNotFoundError(f"no OCI layout at {path}")

    def _rel(self, digest: str) -> str:
        alg, hexpart = split_digest(digest)
        return f"blobs/{alg}/{hexpart}"

    def size(self, rel: str) -> int:
        if self.tar is not None:
            if rel not in self.members:
                raise FileNotFoundError(f"{rel} is not in {self.path}")
            return self.members[rel].size
        return (self.path / rel).stat().st_size

    def open(self, rel: str) -> IO[bytes]:
        if self.tar is not None:
            if rel not in self.members:
                raise FileNotFoundError(f"{rel} is not in {self.path}")
            f = self.tar.extractfile(self.members[rel])
            assert f is not None
            return f
        return open(self.path / rel, "rb")

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def blob(self, digest: str) -> tuple[Callable[[], IO[bytes]], int]:
        rel = self._rel(digest)
        return (lambda: self.open(rel)), self.size(rel)

    def manifest(self, desc: dict) -> Manifest:
        raw = self.read(self._rel(desc["digest"]))
        return Manifest.from_bytes(raw, desc.get("mediaType"), expected=desc["digest"],
                                   what=f"manifest {desc['digest'][:19]} of the layout")

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


