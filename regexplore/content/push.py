"""``push``: an OCI layout (or a list of files made into a one-layer image) to a registry."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import RegistryError, load_json
from ..http.retry import Attempts
from ..model.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from ..reference import ImageRef
from .layout import REF_NAME, LayoutSource, layout_blob_path, layout_entry, write_blob, write_index

__all__ = ["push"]


def _ensure_blob(reg: Any, repo: str, digest: str, size: int, opener: Callable[[], IO[bytes]],
                 chunk_size: int | None, mount_from: str | None) -> None:
    """Make ``repo`` hold the blob: already there (HEAD), mounted from ``mount_from``, or uploaded."""
    if reg.v2.blob_exists(repo, digest):
        return
    if mount_from and mount_from != repo and reg.v2.mount_blob(repo, digest, mount_from):
        return
    _upload_retrying(reg, repo, digest, size, opener, chunk_size)


def _upload_retrying(reg: Any, repo: str, digest: str, size: int, opener: Callable[[], IO[bytes]],
                     chunk_size: int | None) -> None:
    """:meth:`~regexplore.protocol.v2.V2Client.upload_stream` (the one upload), started again from a
    new upload session when the registry answers 429 / 5xx or the connection breaks, as Docker's
    pusher retries a layer: a streamed body cannot be replayed inside one request, and a half-done
    session's state is the server's, so the whole upload is repeated (within the transport's
    :class:`~regexplore.http.retry.RetryPolicy`)."""
    tries = Attempts(reg.transport.retry)
    while True:
        try:
            return reg.v2.upload_stream(repo, digest, size, opener, chunk_size=chunk_size)
        except RegistryError as exc:
            if not (tries.policy.transient(exc) and tries.again(getattr(exc, "retry_after", None))):
                raise


def _push_tree(reg: Any, src: LayoutSource, repo: str, desc: dict, reference: str | None, chunk_size: int | None,
               mount_from: str | None, parallel: int) -> str:
    """Push the manifest ``desc`` names (children and blobs first); returns its digest."""
    m = src.manifest(desc)
    if m.is_index:
        for child in m.json.get("manifests") or []:
            _push_tree(reg, src, repo, child, None, chunk_size, mount_from, parallel)
    else:
        descs = ([m.config_descriptor] if m.config_descriptor else []) + [
            d for d in m.layer_descriptors if not d.get("urls")]
        work = []
        for digest in dict.fromkeys(d["digest"] for d in descs):  # a layer listed twice goes once
            opener, size = src.blob(digest)
            work.append((digest, size, opener))
        if src.tar is not None or parallel <= 1 or len(work) <= 1:  # a TarFile is not thread-safe
            for digest, size, opener in work:
                _ensure_blob(reg, repo, digest, size, opener, chunk_size, mount_from)
        else:
            with ThreadPoolExecutor(min(parallel, len(work)), thread_name_prefix="regexplore-push") as ex:
                for fut in [ex.submit(_ensure_blob, reg, repo, dg, sz, op, chunk_size, mount_from)
                            for dg, sz, op in work]:
                    fut.result()
    return reg.v2.put_manifest(repo, reference or m.digest, m.raw, m.media_type)


def _files_layout(files: Sequence[str | os.PathLike[str]], folder: Path, platform: str) -> None:
    """Write a one-layer OCI layout in ``folder`` from ``files`` (each at the top of the layer under
    its base name; folders recursively), with a small config carrying one history step."""
    paths = [Path(p).expanduser() for p in files]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"two inputs share a base name: {sorted(names)}")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(p)
    tmp_layer = folder / "layer.tmp"
    gz_hash, tar_hash = hashlib.sha256(), hashlib.sha256()

    class _HashingWriter(io.RawIOBase):
        def __init__(self, inner: Any, h: Any) -> None:
            self.inner, self.h = inner, h

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.h.update(b)
            return self.inner.write(b)

    with open(tmp_layer, "wb") as raw:
        gz_out = _HashingWriter(raw, gz_hash)
        with gzip.GzipFile(fileobj=gz_out, mode="wb", mtime=0) as gz:  # type: ignore[arg-type]
            tar_out = _HashingWriter(gz, tar_hash)
            with tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = ""
                    return ti

                for p in paths:
                    tf.add(p, arcname=p.name, filter=clean)
    layer_digest = "sha256:" + gz_hash.hexdigest()
    layer_size = tmp_layer.stat().st_size
    layer_path = layout_blob_path(folder, layer_digest)
    layer_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_layer, layer_path)
    os_, _, arch = platform.partition("/")
    arch, _, variant = arch.partition("/")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config: dict[str, Any] = {
        "created": now, "architecture": arch, "os": os_,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + tar_hash.hexdigest()]},
        "history": [{"created": now, "created_by": "regexplore push " + " ".join(names),
                     "comment": "files added by regexplore"}],
    }
    if variant:
        config["variant"] = variant
    cfg_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cfg_digest = "sha256:" + hashlib.sha256(cfg_raw).hexdigest()
    write_blob(folder, cfg_digest, cfg_raw)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_raw)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest,
                    "size": layer_size}],
    }
    m_raw = json.dumps(manifest, separators=(",", ":")).encode()
    m_digest = "sha256:" + hashlib.sha256(m_raw).hexdigest()
    write_blob(folder, m_digest, m_raw)
    write_index(folder, [layout_entry(OCI_MANIFEST, m_digest, len(m_raw), None)])


def push(reg: Any, source: Any, ref: str | ImageRef, *, chunk_size: int | None = None,
         mount_from: str | None = None, name: str | None = None, platform: str = "linux/amd64",
         parallel: int = 4) -> str:
    """Push to ``ref`` (``"repo:tag"`` or ``"repo"``); returns the pushed manifest's digest.

    ``source``: an OCI image layout (a folder, or a ``.tar`` of one), or a list of files (and
    folders) that become a one-layer image (gzip layer, an OCI config for ``platform`` with one
    history step). In a layout with several entries, ``name`` (else the tag of ``ref``) picks the
    one whose ``org.opencontainers.image.ref.name`` matches. Blobs the repository already has
    are skipped (HEAD); with ``mount_from`` a cross-repository mount is tried first; uploads are
    monolithic and streamed from disk by default, chunked (``PATCH``) with ``chunk_size``. Then
    the manifests: children of an index by digest, the top one by tag.

    Raises ``FileNotFoundError`` / ``ValueError`` for a bad source, :class:`DigestMismatch` for a
    layout manifest that does not hash to its name, and :class:`RegistryError` from the registry.
    """
    r: ImageRef = reg.ref(ref)
    reference = r.tag if r.tag and not r.digest else (r.digest or r.tag)
    with contextlib.ExitStack() as stack:
        if isinstance(source, (list, tuple)):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regexplore-push-")))
            _files_layout(source, folder, platform)
            src = LayoutSource(folder)
        else:
            src = LayoutSource(Path(source).expanduser())
        stack.callback(src.close)
        index = load_json(src.read("index.json"), f"index.json of the layout at {source}")
        entries = list(index.get("manifests") or [])
        if not entries:
            raise ValueError(f"the layout at {source} lists no manifests")
        chosen = entries[0] if len(entries) == 1 else None
        wanted = name or r.tag
        if chosen is None or name is not None:
            matches = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == wanted]
            if not matches:
                have = [(e.get("annotations") or {}).get(REF_NAME) for e in entries]
                raise ValueError(f"the layout has {len(entries)} entries {have}; choose one with name=")
            chosen = matches[0]
        return _push_tree(reg, src, r.repository, chosen, reference, chunk_size, mount_from, parallel)
