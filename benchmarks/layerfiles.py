"""Benchmark layers on disk: gzip'd tars written once into ``benchmarks/results/`` (gitignored) with their
digest, diff ID and size, and pushed as images streamed from disk (regexplore's chunk-less upload)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
GZIP_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"


class Hashing(io.RawIOBase):
    """A write-only file passing bytes on to ``out``, hashing (sha256) and counting them."""

    def __init__(self, out: io.BufferedWriter) -> None:
        super().__init__()
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.size += len(b)
        return self.out.write(b)


def write_gzip_layer(dest: Path, fill: Callable[[Callable[[bytes], None]], None], entries: int = -1) -> dict:
    """Write ``dest``: the tar bytes ``fill(write)`` writes, gzip'd by ISA-L (level 1, no name, mtime 0).
    Returns (and stores next to it as ``.json``) ``digest``, ``diff_id``, ``size`` and ``entries``."""
    from isal import igzip

    partial = dest.with_suffix(".partial")
    diff = hashlib.sha256()
    with open(partial, "wb") as raw:
        sink = Hashing(raw)
        with igzip.IGzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as gz:
            def write(block: bytes) -> None:
                diff.update(block)
                gz.write(block)
            fill(write)
    os.replace(partial, dest)
    meta = {"digest": "sha256:" + sink.sha.hexdigest(), "diff_id": "sha256:" + diff.hexdigest(),
            "size": sink.size, "entries": entries}
    dest.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta


def tar_of(tar_args: Sequence[str]) -> Callable[[Callable[[bytes], None]], None]:
    """A ``fill`` for :func:`write_gzip_layer`: the output of ``tar -cf - --numeric-owner --sort=name ARGS``
    (GNU tar's exit code 1, "a file changed as we read it", is accepted)."""
    def fill(write: Callable[[bytes], None]) -> None:
        proc = subprocess.Popen(["tar", "-cf", "-", "--numeric-owner", "--sort=name", *tar_args],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        while block := proc.stdout.read(MiB):
            write(block)
        if proc.wait() not in (0, 1):
            raise SystemExit(f"tar {' '.join(tar_args[:6])}... failed")
    return fill


def cached(name: str, build: Callable[[Path], dict], rebuild: bool = False) -> tuple[Path, dict]:
    """``results/NAME.tar.gz`` and its metadata, built by ``build(path)`` when missing (or ``rebuild``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.tar.gz"
    meta_path = path.with_suffix(".json")
    if rebuild or not path.exists() or not meta_path.exists():
        print(f"building {path} (once) ...", flush=True)
        build(path)
    meta = json.loads(meta_path.read_text())
    if path.stat().st_size != meta["size"]:
        raise SystemExit(f"{path} changed; rerun with --rebuild")
    return path, meta


def push_image(reg, repo: str, tag: str, layers: Sequence[tuple[Path, dict]], pushed: set[str]) -> str:
    """Push an image of ``layers`` (``(path, meta)``, oldest first; each streamed from disk unless its digest
    is in ``pushed``, to which it is added) with a minimal amd64 config carrying their diff IDs; returns
    ``repo:tag``."""
    for path, meta in layers:
        if meta["digest"] not in pushed:
            reg.v2.upload_stream(repo, meta["digest"], meta["size"], lambda p=path: open(p, "rb"))
            pushed.add(meta["digest"])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [m["diff_id"] for _, m in layers]}}).encode()
    cfg_digest = reg.v2.upload_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": len(config)},
        "layers": [{"mediaType": GZIP_MEDIA, "digest": m["digest"], "size": m["size"]} for _, m in layers],
    }).encode()
    reg.v2.put_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return f"{repo}:{tag}"
