"""``download``: an image's blobs (or one blob) into a folder, through the fetch engine.

What to fetch is planned here (:func:`_plan`: the config and layers of an image, a platform of an
index, a selection of layers, one blob by digest, a bare digest from the cache); how each blob
is fetched, verified, resumed and cached is :mod:`regexplore.content.fetch`'s business.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..protocol.v2 import request_blob
from ..reference import ImageRef
from .cache import DIGEST, blob_filename, cache_dir, cached
from .fetch import run_jobs
from .progress import resolve_progress
from .v1layers import download_v1, is_v1
from .v2blobs import blob_job

__all__ = ["Target", "download", "fetch_targets"]


@dataclass
class Target:
    """One blob to fetch: where from, its digest, its size when known, its progress label."""

    repo: str | None
    digest: str
    size: int | None
    label: str
    size_hint: int | None = None


def _plan(reg: Any, ref_or_digest: Any, platform: str | None, layers: Sequence[Any] | None,
          cdir: Path | None) -> tuple[list[Target], str]:
    """What to download: (targets in output order, a description for the progress bar)."""
    if isinstance(ref_or_digest, str) and DIGEST.match(ref_or_digest.strip()):
        d = ref_or_digest.strip()
        hit = cached(cdir, d, None)
        if hit is None:
            raise ValueError(f"a bare digest can only be served from the cache; name its repository: "
                             f"'repo@{d}'")
        return [Target(None, d, hit.size, "blob")], d[:19]
    r: ImageRef = reg.ref(ref_or_digest)
    if r.digest:
        # a blob or a manifest? Ask the blob endpoint first: asking for a layer as a manifest makes
        # distribution answer 500 (retried by the transport); a manifest's digest is 404 as a blob
        # there, and elsewhere its Content-Type gives it away
        try:
            head = request_blob(reg.transport, "HEAD", f"/v2/{r.repository}/blobs/{r.digest}", what="blob")
        except NotFound:
            head = None
        ctype = (head.headers.get("Content-Type") or "").split(";")[0].strip() if head is not None else ""
        if head is not None and not ctype.startswith("application/vnd.oci.image.index") \
                and "manifest" not in ctype:
            cl = head.headers.get("Content-Length", "")
            return [Target(r.repository, r.digest, None, "blob", int(cl) if cl.isdigit() else None)], \
                r.digest[:19]
    image, _index = reg._resolve(r, platform)  # an index's platform, nested indexes followed
    targets: list[Target] = []
    cd = image.config_descriptor
    layer_descs = image.layer_descriptors
    if layers is None:
        if cd and cd.get("digest"):
            targets.append(Target(r.repository, cd["digest"], cd.get("size"), "config"))
        for i, d in enumerate(layer_descs):
            targets.append(Target(r.repository, d["digest"], d.get("size"), f"layer {i}"))
    else:
        by_digest = {d["digest"]: (i, d) for i, d in enumerate(layer_descs)}
        for sel in layers:
            if isinstance(sel, int):
                try:
                    d = layer_descs[sel]
                except IndexError:
                    raise IndexError(f"layer {sel} out of range: {r} has {len(layer_descs)} layers") from None
                targets.append(Target(r.repository, d["digest"], d.get("size"), f"layer {sel % len(layer_descs)}"))
            elif cd and sel == cd.get("digest"):
                targets.append(Target(r.repository, sel, cd.get("size"), "config"))
            elif sel in by_digest:
                i, d = by_digest[sel]
                targets.append(Target(r.repository, sel, d.get("size"), f"layer {i}"))
            else:
                raise NotFound(f"{sel} is not a layer of {r}")
    return targets, r.familiar()


def fetch_targets(reg: Any, targets: Iterable[Target], path_of: Callable[[str], Path], cdir: Path | None,
                  progress: Any, parallel: int, desc: str) -> None:
    """Fetch every target (once per digest) to ``path_of(digest)`` through the engine, with one
    progress reporter over all of them (closed at the end)."""
    unique: dict[str, Target] = {}
    for t in targets:
        unique.setdefault(t.digest, t)
    sizes = [t.size for t in unique.values()]
    total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    reporter = resolve_progress(progress, total=total, count=len(unique), desc=desc)
    cancel = threading.Event()
    jobs = [(blob_job(reg, t.repo, t.digest, t.size, report=reporter, label=t.label, cancel=cancel,
                      parallel=parallel, size_hint=t.size_hint), path_of(t.digest)) for t in unique.values()]
    try:
        if jobs:
            run_jobs(jobs, cdir, parallel, cancel)
    finally:
        if reporter is not None:
            reporter.close()


def download(reg: Any, ref_or_digest: str | ImageRef, dest: str | os.PathLike[str] = ".", *,
             platform: str | None = None, progress: Any = True, parallel: int = 4,
             layers: Sequence[int | str] | None = None,
             cache: bool | str | os.PathLike[str] | None = None) -> list[Path]:
    """Download an image's blobs (or one blob) into ``dest``, verified, atomic and resumable.

    ``ref_or_digest``: an image reference (``"demo/app:1"``; for an index the ``platform`` is
    chosen like :meth:`Registry.history` does: the given one, else linux/amd64, else the first),
    ``"repo@sha256:…"`` of a manifest (an image) or of a blob (that blob), or a bare
    ``"sha256:…"`` that is already in the cache.

    ``layers``: indexes (negative allowed) or digests to download instead of the whole image.
    ``progress``: True (tqdm bars), False, a callable taking a :class:`ProgressEvent`, or an
    object with ``update``/``close``. ``parallel``: blobs fetched at once (and ranged parts of a
    blob ≥ 64 MiB). ``cache``: see :func:`cache_dir`.

    Returns the paths (``dest/sha256-<hex>``) in order: the config first, then every layer in
    manifest order (a repeated layer repeats its path).

    On a v1 registry the layers of the image's ancestry are fetched the same way
    (:func:`regexplore.content.v1layers.download_v1`).

    Raises :class:`DigestMismatch` (no file is left under the good name),
    :class:`~regexplore.errors.NotFound`, :class:`RegistryError` for transfers that keep
    failing (the ``.partial`` stays, and the next call resumes it). After one blob fails, no
    other starts, and those already in flight finish first (so the error comes when they are
    done, and no ``.partial`` of theirs is left); Ctrl-C stops everything at once.
    """
    if is_v1(reg):
        return download_v1(reg, ref_or_digest, dest, platform=platform, progress=progress, parallel=parallel,
                           layers=layers, cache=cache)
    cdir = cache_dir(cache)
    folder = Path(dest).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    targets, desc = _plan(reg, ref_or_digest, platform, layers, cdir)
    fetch_targets(reg, targets, lambda digest: folder / blob_filename(digest), cdir, progress, parallel, desc)
    return [folder / blob_filename(t.digest) for t in targets]
