"""Benchmark content, pushed with regexplore's own v2 upload into a fresh local registry.

- ``bench/many-tags``: ``tags`` tags (default 500), each a DISTINCT image: its own small config blob (the tag
  number in a label, its own ``created``) and its own manifest; all share one small gzip layer.
- ``catalog/repo-NNNN``: ``repos`` repositories (default 2,000) for ``/v2/_catalog``, each with the shared
  layer and a shared config mounted from ``bench/many-tags`` and one small manifest tagged ``latest``.

Uploads run concurrently on a thread pool (``workers``); on 2 cores the whole set takes well under a minute.

    python -m benchmarks.content            # start a registry, push, print timings, stop
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import regexplore as rx
from regexplore.sandbox import LocalRegistry

__all__ = ["BenchContent", "bench_registry", "push_content", "TAGS_REPO", "CATALOG_PREFIX"]

TAGS_REPO = "bench/many-tags"
CATALOG_PREFIX = "catalog/repo-"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# the registry's own access log costs CPU that the benchmark's client competes for on 2 cores; the
# in-memory blob descriptor cache is what distribution's stock config.yml turns on
QUIET = {"log": {"level": "error", "accesslog": {"disabled": True}},
         "storage": {"cache": {"blobdescriptor": "inmemory"}}}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> tuple[bytes, str]:
    """A tiny deterministic gzip tar with one file; returns (blob, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"regexplore benchmark layer\n"
        info = tarfile.TarInfo("etc/bench.txt")
        info.size, info.mtime, info.mode = len(data), 946684800, 0o644
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), _sha(raw)


def _config(i: int, diff_id: str) -> bytes:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + i * 3600))
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "Labels": {"bench.index": str(i)}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"COPY bench.txt /etc/ # image {i}"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _manifest(config: bytes, layer: bytes) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _sha(layer), "size": len(layer)}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class BenchContent:
    tags_repo: str = TAGS_REPO
    tags: list[str] = field(default_factory=list)
    manifest_digests: dict[str, str] = field(default_factory=dict)
    catalog_repos: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def bench_registry(**kw: Any) -> LocalRegistry:
    """A fresh, quiet, empty ``LocalRegistry`` (not started: use it in ``with``). Catalog pages of up to 1,000."""
    extra = dict(QUIET)
    extra.update(kw.pop("extra_config", {}) or {})
    return LocalRegistry(seed=False, extra_config=extra, **kw)


def push_content(url: str, *, tags: int = 500, repos: int = 2000, workers: int = 16) -> BenchContent:
    """Push the benchmark content to the (empty) registry at ``url``; returns what was pushed and timings."""
    out = BenchContent()
    layer, diff_id = _layer()
    shared_config = _config(-1, diff_id)
    shared_manifest = _manifest(shared_config, layer)
    with rx.Registry(url, max_workers=workers) as reg, ThreadPoolExecutor(workers) as pool:
        v2 = reg.v2
        t0 = time.perf_counter()
        v2.upload_blob(TAGS_REPO, layer)
        v2.upload_blob(TAGS_REPO, shared_config)

        def one_tag(i: int) -> tuple[str, str]:
            cfg = _config(i, diff_id)
            v2.upload_blob(TAGS_REPO, cfg)
            tag = f"v{i:04d}"
            return tag, v2.put_manifest(TAGS_REPO, tag, _manifest(cfg, layer), OCI_MANIFEST)

        for tag, digest in pool.map(one_tag, range(tags)):
            out.tags.append(tag)
            out.manifest_digests[tag] = digest
        if len(set(out.manifest_digests.values())) != tags:
            raise AssertionError("tags are not distinct images")
        out.seconds["tags"] = time.perf_counter() - t0

        t0 = time.perf_counter()

        def one_repo(i: int) -> str:
            name = f"{CATALOG_PREFIX}{i:04d}"
            for blob in (layer, shared_config):
                if not v2.mount_blob(name, _sha(blob), TAGS_REPO):
                    v2.upload_blob(name, blob)
            v2.put_manifest(name, "latest", shared_manifest, OCI_MANIFEST)
            return name

        out.catalog_repos = list(pool.map(one_repo, range(repos)))
        out.seconds["catalog"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=500)
    ap.add_argument("--repos", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    with bench_registry() as sandbox:
        c = push_content(sandbox.url, tags=args.tags, repos=args.repos, workers=args.workers)
        reg = rx.Registry(sandbox.url)
        n_cat = len(reg.catalog())
        print(f"registry {sandbox.url}: {len(c.tags)} tags in {TAGS_REPO} ({c.seconds['tags']:.1f} s), "
              f"{len(c.catalog_repos)} catalog repositories ({c.seconds['catalog']:.1f} s); catalog lists {n_cat}")


if __name__ == "__main__":
    main()
