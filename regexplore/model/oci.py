"""Manifests, indexes, configs, platforms and history alignment: pure data, no I/O.

Everything here takes bytes or dicts that came from a registry (or a fixture) and returns plain
Python rows; :mod:`regexplore.model.frames` turns rows into DataFrames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import DigestMismatch, RegistryError, UnsupportedMediaType, load_json

__all__ = [
    "OCI_INDEX", "OCI_MANIFEST", "OCI_CONFIG", "DOCKER_LIST", "DOCKER_V2", "DOCKER_CONFIG",
    "SCHEMA1_SIGNED", "SCHEMA1", "OCI_LAYER", "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD", "DOCKER_LAYER", "IN_TOTO",
    "OCI_EMPTY", "EMPTY_JSON", "EMPTY_DESCRIPTOR", "CREATED_ANNOTATION", "TITLE_ANNOTATION",
    "MANIFEST_ACCEPT", "INDEX_TYPES", "IMAGE_TYPES",
    "EMPTY_GZIP_LAYER", "Manifest", "sha256_digest", "check_digest", "detect_media_type",
    "platform_rows", "choose_platform", "history_rows", "layer_rows", "parse_time",
    "compression_of", "image_summary", "MAX_INDEX_DEPTH", "v1_compatibility",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"
#: OCI 1.1 artifacts (image-spec manifest.md "Guidance for an Empty Descriptor"): the empty config and layer
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": OCI_EMPTY,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2}
#: image-spec annotations.md: when an artifact (or image) was created (RFC 3339), and a file's name
CREATED_ANNOTATION = "org.opencontainers.image.created"
TITLE_ANNOTATION = "org.opencontainers.image.title"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_V2})
SCHEMA1_TYPES = frozenset({SCHEMA1_SIGNED, SCHEMA1})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_V2, SCHEMA1_SIGNED, SCHEMA1])

#: nested indexes are followed this many levels below the top index; deeper ones stay entries
MAX_INDEX_DEPTH = 4

#: the gzipped empty tar that schema1 uses for ``throwaway`` steps
EMPTY_GZIP_LAYER = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(data: bytes, expected: str, *, url: str | None = None, what: str = "content") -> str:
    """Hash ``data`` with ``expected``'s algorithm; return the digest or raise :class:`DigestMismatch`."""
    alg, _, _ = expected.partition(":")
    if alg not in ("sha256", "sha512", "sha384"):
        raise UnsupportedMediaType(f"unsupported digest algorithm {alg!r}")
    actual = f"{alg}:" + hashlib.new(alg, data).hexdigest()
    if actual != expected:
        raise DigestMismatch(expected, actual, url=url, what=what)
    return actual


def detect_media_type(raw: bytes, content_type: str | None, what: str = "manifest") -> str:
    """Decide a manifest's type: ``Content-Type`` first, then ``mediaType``, then ``schemaVersion``
    (docs/protocol.md §8.9). Raises :class:`UnsupportedMediaType` when none fits, or when the JSON
    is nested too deeply (the message names ``what``)."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    known = INDEX_TYPES | IMAGE_TYPES | SCHEMA1_TYPES
    if ct in known:
        return ct
    try:
        doc = load_json(raw, what, error=UnsupportedMediaType)
    except ValueError:
        raise UnsupportedMediaType(f"manifest is not JSON (Content-Type {ct or 'none'})") from None
    if not isinstance(doc, dict):
        raise UnsupportedMediaType("manifest is not a JSON object")
    mt = doc.get("mediaType")
    if mt in known:
        return mt
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_SIGNED if "signatures" in doc else SCHEMA1
    if doc.get("schemaVersion") == 2:
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
    raise UnsupportedMediaType(f"unknown manifest type (Content-Type {ct or 'none'}, mediaType {mt!r})")


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry sent it.

    ``digest`` is computed from ``raw`` (never from re-serialised JSON); ``json`` is the parsed
    document; ``media_type`` is the decided type.
    """

    raw: bytes
    media_type: str
    digest: str
    json: dict = field(repr=False, hash=False, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes, content_type: str | None = None, *, expected: str | None = None,
                   url: str | None = None, what: str = "manifest") -> Manifest:
        """Parse and check manifest bytes (``what`` names them in errors, e.g. ``"manifest
        demo/x:1"``). Raises :class:`DigestMismatch`, :class:`UnsupportedMediaType` (unknown type,
        not JSON, nested too deeply, ``mediaType`` contradicting the ``Content-Type``)."""
        media_type = detect_media_type(raw, content_type, what)
        digest = sha256_digest(schema1_payload(raw) if media_type == SCHEMA1_SIGNED else raw)
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(expected, digest, url=url, what="manifest")
        if expected and not expected.startswith("sha256:"):
            check_digest(raw, expected, url=url, what="manifest")
            digest = expected
        try:
            doc = load_json(raw, what, url=url, error=UnsupportedMediaType)
        except ValueError:
            raise UnsupportedMediaType(f"{what} is not JSON ({media_type})", url=url) from None
        if not isinstance(doc, dict):
            raise UnsupportedMediaType(f"{what} is not a JSON object ({media_type})", url=url)
        declared = doc.get("mediaType")
        if declared and declared != media_type and media_type not in SCHEMA1_TYPES:
            raise UnsupportedMediaType(
                f"manifest mediaType {declared!r} differs from Content-Type {media_type!r}", url=url)
        return cls(raw, media_type, digest, doc)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def is_schema1(self) -> bool:
        return self.media_type in SCHEMA1_TYPES

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def config_descriptor(self) -> dict | None:
        return self.json.get("config") if self.media_type in IMAGE_TYPES else None

    @property
    def layer_descriptors(self) -> list[dict]:
        """The layer descriptors, oldest first. Raises :class:`UnsupportedMediaType` when an image manifest's
        ``layers`` is not a list of JSON objects whose ``digest`` (when given) is a string."""
        if self.media_type in IMAGE_TYPES:
            layers = self.json.get("layers") or []
            if not isinstance(layers, list) or not all(
                    isinstance(d, dict) and isinstance(d.get("digest", ""), str) for d in layers):
                raise UnsupportedMediaType(f"manifest {self.digest}: 'layers' is not a list of descriptors")
            return list(layers)
        if self.is_schema1:
            # fsLayers are newest first; return oldest first like the other types
            return [{"digest": fl.get("blobSum"), "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                     "size": None} for fl in reversed(self.json.get("fsLayers") or [])]
        return []

    def __repr__(self) -> str:
        return f"Manifest({self.media_type.rsplit('.', 1)[-1]}, {self.digest[:19]}…, {self.size} bytes)"

    def _repr_html_(self) -> str:
        from html import escape

        kind = "index" if self.is_index else ("schema1" if self.is_schema1 else "image manifest")
        rows = [("kind", kind), ("media type", self.media_type), ("digest", self.digest), ("bytes", str(self.size))]
        if self.is_index:
            rows.append(("entries", str(len(self.json.get("manifests") or []))))
        else:
            layers = self.json.get("layers") if self.media_type in IMAGE_TYPES else self.json.get("fsLayers")
            rows.append(("layers", str(len(layers)) if isinstance(layers, list) else "?"))
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
                       for k, v in rows)
        return f"<table class='regexplore-manifest'>{body}</table>"


def schema1_payload(raw: bytes) -> bytes:
    """The bytes a signed schema1 manifest's digest is computed over: the JWS payload without the
    ``signatures`` (``raw[:formatLength] + base64url(formatTail)`` from the protected header, as
    distribution's libtrust does). Unsigned or unparseable input is returned unchanged."""
    import base64

    def b64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    try:
        sigs = load_json(raw, "signed manifest").get("signatures") or []
        protected = load_json(b64(sigs[0]["protected"]), "signature header")
        length, tail = int(protected["formatLength"]), b64(protected["formatTail"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RegistryError):
        return raw  # Manifest.from_bytes then says what is wrong with it
    if not 0 < length <= len(raw):
        return raw
    return raw[:length] + tail


def parse_time(value: Any) -> datetime | None:
    """Parse RFC 3339 timestamps as registries write them (up to 9 fractional digits, ``Z`` or
    an offset) into an aware UTC datetime; None for absent or unparseable values."""
    if not value or not isinstance(value, str):
        return None
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    if "." in s:
        head, _, rest = s.partition(".")
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        s = f"{head}.{(frac + '000000')[:6]}{tz}"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        dt = dt.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved past the calendar by its offset
        return None
    if dt.year <= 1:  # Go's zero time
        return None
    return dt


def _platform_str(p: dict) -> str:
    s = f"{p.get('os', '')}/{p.get('architecture', '')}"
    if p.get("variant"):
        s += f"/{p['variant']}"
    return s


def is_attestation(entry: dict) -> bool:
    p = entry.get("platform") or {}
    ann = entry.get("annotations") or {}
    return (p.get("os") == "unknown" and p.get("architecture") == "unknown") or \
        "vnd.docker.reference.type" in ann


def platform_rows(index: dict) -> list[dict]:
    """One row per index entry: os, architecture, variant, os_version, digest, media_type, size,
    platform (``os/arch[/variant]``) and attestation (True for ``unknown/unknown`` entries)."""
    rows = []
    for e in index.get("manifests") or []:
        p = e.get("platform") or {}
        rows.append({
            "os": p.get("os"),
            "architecture": p.get("architecture"),
            "variant": p.get("variant"),
            "os_version": p.get("os.version"),
            "digest": e.get("digest"),
            "media_type": e.get("mediaType"),
            "size": e.get("size"),
            "platform": _platform_str(p) if p else None,
            "attestation": is_attestation(e),
        })
    return rows


_KNOWN_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
             "android", "ios", "plan9", "wasip1", "js"}


def _parse_platform(spec: str) -> tuple[str, str, str | None]:
    """``os/arch[/variant]``, ``arch`` or ``arch/variant`` (as containerd's platforms.Parse:
    two parts name an OS first only when the first is a known OS)."""
    parts = spec.strip().lower().split("/")
    if len(parts) == 1:
        return "linux", parts[0], None
    if len(parts) == 2:
        if parts[0] in _KNOWN_OS:
            return parts[0], parts[1], None
        return "linux", parts[0], parts[1]
    return parts[0], parts[1], parts[2]


def choose_platform(index: dict, platform: str | None = None) -> dict:
    """Pick one entry of an index: ``platform`` (``os/arch[/variant]`` or ``arch``) if given, else
    linux/amd64, else the first entry with a platform that is not an attestation, else the first.
    Raises :class:`regexplore.errors.NotFound` (a ``LookupError``) when nothing matches."""
    from ..errors import NotFound

    entries = [e for e in index.get("manifests") or [] if not is_attestation(e)]
    if not entries:
        raise NotFound("the index lists no platform manifests")
    if platform:
        os_, arch, variant = _parse_platform(platform)
        for e in entries:
            p = e.get("platform") or {}
            same_variant = variant is None or p.get("variant") == variant
            if p.get("os") == os_ and p.get("architecture") == arch and same_variant:
                return e
        have = ", ".join(_platform_str(e.get("platform") or {}) for e in entries)
        raise NotFound(f"no {platform} in this index (it has {have})")
    for e in entries:
        p = e.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == "amd64":
            return e
    # an entry without a platform (an artifact in a mixed index) is no one's default
    return next((e for e in entries if (e.get("platform") or {}).get("os")), entries[0])


def compression_of(media_type: str | None) -> str:
    """``gzip`` / ``zstd`` / ``none`` / ``unknown`` from a layer media type."""
    mt = (media_type or "").lower()
    if mt.endswith("gzip"):
        return "gzip"
    if mt.endswith("zstd"):
        return "zstd"
    if mt.endswith(".tar") or mt.endswith("tar.diff"):
        return "none"
    return "unknown"


def _cmd_text(cfg: dict | None) -> str:
    cmd = (cfg or {}).get("Cmd")
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return str(cmd) if cmd else ""


def history_rows(manifest: Manifest, config: dict | None) -> list[dict]:
    """docker-history-like rows in build order (oldest first), ``step`` from 0.

    OCI / schema2: ``config.history`` aligned with ``manifest.layers`` and ``rootfs.diff_ids``;
    when the number of non-empty steps differs from the number of layers the sizes and digests
    are unknown (None), never guessed. Schema1: ``history[].v1Compatibility`` (newest first in
    the manifest), ``throwaway`` marks empty steps, ``created_by`` is the Cmd joined by spaces.
    """
    if manifest.is_schema1:
        return _schema1_history(manifest)
    if manifest.media_type not in IMAGE_TYPES:
        raise UnsupportedMediaType(f"history needs an image manifest, not {manifest.media_type}")
    cfg = config or {}
    layers = manifest.layer_descriptors
    diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
    history = list(cfg.get("history") or [])
    rows: list[dict] = []
    if not history:
        # no history: one row per layer, nothing else known
        for i, layer in enumerate(layers):
            rows.append(_hrow(i, None, "", False, layer.get("size"), layer.get("digest"),
                              diff_ids[i] if i < len(diff_ids) else None, ""))
        return rows
    non_empty = sum(1 for h in history if not h.get("empty_layer"))
    aligned = non_empty == len(layers)
    k = 0
    for i, h in enumerate(history):
        empty = bool(h.get("empty_layer"))
        size = digest = diff_id = None
        if empty:
            size = 0
        elif aligned:
            size = layers[k].get("size")
            digest = layers[k].get("digest")
            diff_id = diff_ids[k] if k < len(diff_ids) else None
            k += 1
        rows.append(_hrow(i, parse_time(h.get("created")), h.get("created_by") or "", empty, size, digest,
                          diff_id, h.get("comment") or ""))
    return rows


def _hrow(step: int, created: Any, created_by: str, empty: bool, size: Any, digest: Any, diff_id: Any,
          comment: str) -> dict:
    return {"step": step, "created": created, "created_by": created_by, "empty_layer": empty,
            "size": size, "layer_digest": digest, "diff_id": diff_id, "comment": comment}


def v1_compatibility(manifest: Manifest, j: int = 0) -> dict:
    """The v1 image JSON in ``history[j].v1Compatibility`` of a schema1 manifest (0: the newest,
    with the full config); ``{}`` when absent or not a JSON object. Raises
    :class:`UnsupportedMediaType` naming it when it is nested too deeply."""
    hist = manifest.json.get("history")
    entry = hist[j] if isinstance(hist, list) and j < len(hist) and isinstance(hist[j], dict) else {}
    text = entry.get("v1Compatibility")
    if not isinstance(text, str) or not text:
        return {}
    try:
        doc = load_json(text, f"v1Compatibility {j} of manifest {manifest.digest[:19]}…", error=UnsupportedMediaType)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _schema1_history(manifest: Manifest) -> list[dict]:
    hist = manifest.json.get("history") or []
    fs = manifest.json.get("fsLayers") or []
    rows = []
    n = len(hist)
    for j in range(n - 1, -1, -1):  # oldest first
        v1 = v1_compatibility(manifest, j)
        blob = fs[j].get("blobSum") if j < len(fs) else None
        empty = bool(v1.get("throwaway")) or blob == EMPTY_GZIP_LAYER
        size = 0 if empty else None  # v1Compatibility's Size is the uncompressed size; schema1 has no other
        rows.append(_hrow(n - 1 - j, parse_time(v1.get("created")), _cmd_text(v1.get("container_config")),
                          empty, size, None if empty else blob, None, v1.get("comment") or ""))
    return rows


def layer_rows(manifest: Manifest, config: dict | None) -> list[dict]:
    """One row per layer in manifest order: index, digest, media_type, compression, size,
    diff_id and the ``created_by`` of the history step that made it (when history aligns)."""
    layers = manifest.layer_descriptors
    cfg = config or {}
    diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
    steps: list[str | None] = [None] * len(layers)
    if manifest.is_schema1:
        hist = _schema1_history(manifest)
        # schema1 layers include throwaway ones; keep all, mapping step by position
        for i, r in enumerate(hist[: len(layers)]):
            steps[i] = r["created_by"]
    else:
        non_empty = [h for h in cfg.get("history") or [] if not h.get("empty_layer")]
        if len(non_empty) == len(layers):
            steps = [h.get("created_by") or "" for h in non_empty]
    rows = []
    for i, d in enumerate(layers):
        rows.append({
            "index": i,
            "digest": d.get("digest"),
            "media_type": d.get("mediaType"),
            "compression": compression_of(d.get("mediaType")),
            "size": d.get("size"),
            "diff_id": diff_ids[i] if i < len(diff_ids) and not manifest.is_schema1 else None,
            "created_by": steps[i],
        })
    return rows


def image_summary(manifest: Manifest, config: dict | None) -> dict:
    """created, os, architecture and size (config + layers) of one image manifest."""
    cfg = config or {}
    if manifest.is_schema1:
        rows = _schema1_history(manifest)
        top = v1_compatibility(manifest)
        return {"created": rows[-1]["created"] if rows else None, "os": top.get("os"),
                "architecture": manifest.json.get("architecture") or top.get("architecture"), "size": None}
    size = None
    cd = manifest.config_descriptor or {}
    sizes = [cd.get("size")] + [layer.get("size") for layer in manifest.layer_descriptors]
    if all(isinstance(s, int) for s in sizes):
        size = sum(sizes)
    # cosign and other artifact configs write "" where an image has its platform: no value
    return {"created": parse_time(cfg.get("created")), "os": cfg.get("os") or None,
            "architecture": cfg.get("architecture") or None, "size": size}
