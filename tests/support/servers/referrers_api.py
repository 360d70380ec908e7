"""A registry with the OCI Distribution Spec 1.1 referrers API, written from the spec's text (not from regexplore).

What it implements, section by section of distribution-spec ``spec.md`` (v1.1):

- "Pushing Manifests with Subject": a manifest PUT whose manifest has a ``subject`` is answered with
  ``OCI-Subject: <subject digest>`` (when :attr:`api` is ``"spec"``);
- "Listing Referrers" (end-12a/12b): ``GET /v2/<name>/referrers/<digest>`` answers ``200`` with
  ``Content-Type: application/vnd.oci.image.index.v1+json`` and an image index whose descriptors carry the
  referrer's ``artifactType`` (its ``artifactType``, else its config's ``mediaType``) and ``annotations``; an
  empty list when there are none; ``400`` for an invalid digest; pages linked by ``Link: <…>; rel="next"``
  (:attr:`page_size` descriptors a page); ``?artifactType=`` filters, and then ``OCI-Filters-Applied:
  artifactType`` (unless :attr:`filters` is False: a registry that ignores the filter, which the spec allows);
- the blob and manifest endpoints a client needs around that (end-2, end-3, end-4a, end-6, end-7), with
  ``ETag`` on manifest GETs and ``If-Match`` / ``If-None-Match`` honoured on manifest PUTs (RFC 9110 §13: 412);
- with :attr:`token_server` set, every ``/v2/`` request needs a Bearer token from it (RFC 6750 challenge with
  ``realm``, ``service``, ``scope``), checked with the token server's certificate.

What a registry that does *not* follow the spec looks like, for the fallback tests: :attr:`api` ``"404"`` (no
referrers API), ``"html"`` (a 200 that is not an image index), ``"loop"`` (a ``Link`` back to the first page);
:attr:`canned` maps a digest to a body served as its referrers answer (a recorded one, or a hostile one).
Every request is logged in :attr:`requests` as ``(method, path, query)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jwt
from cryptography import x509

from .loopback import LoopbackServer

__all__ = ["ReferrersRegistry"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|referrers|tags)/(?P<ref>[^/]*)(?P<rest>/.*)?$")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class ReferrersRegistry(LoopbackServer):
    """The spec's registry on loopback; see the module docstring for the switches."""

    api: str = "spec"  # "spec" | "404" | "html" | "loop"
    page_size: int = 10_000
    filters: bool = True
    token_server: Any = None
    canned: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.manifests: dict[str, tuple[bytes, str]] = {}  # "name@digest" -> (bytes, media type)
        self.tags: dict[str, str] = {}  # "name:tag" -> digest
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def handler(self) -> type:
        server = self

        class Handler(_Handler):
            reg = server

        return Handler

    def put(self, name: str, raw: bytes, media_type: str, tag: str | None = None) -> str:
        """Store a manifest (as a PUT would); returns its digest."""
        digest = sha256(raw)
        with self.lock:
            self.manifests[f"{name}@{digest}"] = (raw, media_type)
            if tag:
                self.tags[f"{name}:{tag}"] = digest
        return digest

    def referrers_of(self, name: str, digest: str) -> list[dict]:
        """The descriptors the spec's referrers API lists for ``digest``."""
        out = []
        with self.lock:
            stored = list(self.manifests.items())
        for key, (raw, media_type) in stored:
            repo, _, mdigest = key.rpartition("@")
            doc = json.loads(raw)
            if repo != name or (doc.get("subject") or {}).get("digest") != digest:
                continue
            desc = {"mediaType": media_type, "digest": mdigest, "size": len(raw)}
            atype = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if atype:
                desc["artifactType"] = atype
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            out.append(desc)
        return out


class _Handler(BaseHTTPRequestHandler):
    reg: ReferrersRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes = b"", ctype: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str) -> None:
        self.send(status, json.dumps({"errors": [{"code": code, "message": message}]}).encode())

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def authorized(self, name: str | None) -> bool:
        """True without a token server, or with a Bearer token it signed that grants pull on ``name``."""
        ts = self.reg.token_server
        if ts is None:
            return True
        actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
        scope = f"repository:{name}:{actions}" if name else ""
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            key = x509.load_pem_x509_certificate(open(ts.cert_path, "rb").read()).public_key()
            try:
                claims = jwt.decode(header[7:], key, algorithms=["RS256"], audience=ts.service)
            except jwt.PyJWTError:
                claims = None
            if claims is not None and (name is None or any(
                    a.get("name") == name and "pull" in a.get("actions", []) for a in claims.get("access", []))):
                return True
        challenge = f'Bearer realm="{ts.realm}",service="{ts.service}"' + (f',scope="{scope}"' if scope else "")
        self.send(401, json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
                                  ).encode(), WWW_Authenticate=challenge)
        return False

    def route(self) -> tuple[str, str, str, str, dict] | None:
        parts = urlsplit(self.path)
        with self.reg.lock:
            self.reg.requests.append((self.command, parts.path, parts.query))
        if parts.path == "/v2/":
            if self.authorized(None):
                self.send(200, b"{}")
            return None
        m = _PATH.match(parts.path)
        if not m:
            self.error(404, "NAME_UNKNOWN", "no such route")
            return None
        if not self.authorized(m["name"]):
            return None
        return m["name"], m["kind"], m["ref"], m["rest"] or "", parse_qs(parts.query)

    def do_GET(self) -> None:
        found = self.route()
        if found is None:
            return
        name, kind, ref, _, query = found
        if kind == "referrers":
            self.referrers(name, ref, query)
        elif kind == "manifests":
            self.get_manifest(name, ref)
        elif kind == "blobs" and ref in self.reg.blobs:
            self.send(200, self.reg.blobs[ref], "application/octet-stream", Docker_Content_Digest=ref)
        else:
            self.error(404, "BLOB_UNKNOWN", "blob unknown to registry")

    do_HEAD = do_GET

    def get_manifest(self, name: str, ref: str) -> None:
        digest = ref if _DIGEST.match(ref) else self.reg.tags.get(f"{name}:{ref}")
        stored = self.reg.manifests.get(f"{name}@{digest}")
        if stored is None:
            self.error(404, "MANIFEST_UNKNOWN", "manifest unknown to registry")
            return
        self.send(200, stored[0], stored[1], Docker_Content_Digest=str(digest), ETag=f'"{digest}"')

    def referrers(self, name: str, digest: str, query: dict) -> None:
        reg = self.reg
        if reg.api == "404":
            self.error(404, "NAME_UNKNOWN", "404 page not found")
            return
        if reg.api == "html":
            self.send(200, b"<html><body>referrers</body></html>", "text/html; charset=utf-8")
            return
        if not _DIGEST.match(digest):
            self.error(400, "DIGEST_INVALID", "invalid digest")
            return
        if digest in reg.canned:
            self.send(200, reg.canned[digest], OCI_INDEX)
            return
        descs = reg.referrers_of(name, digest)
        atype = (query.get("artifactType") or [None])[0]
        headers = {}
        if atype and reg.filters:
            descs = [d for d in descs if d.get("artifactType") == atype]
            headers["OCI_Filters_Applied"] = "artifactType"
        page = int((query.get("page") or ["0"])[0])
        chunk = descs[page * reg.page_size:(page + 1) * reg.page_size]
        more = (page + 1) * reg.page_size < len(descs)
        if more or reg.api == "loop":
            nxt = 0 if reg.api == "loop" else page + 1
            extra = f"&artifactType={quote(atype, safe='')}" if atype else ""
            headers["Link"] = f'</v2/{name}/referrers/{digest}?page={nxt}{extra}>; rel="next"'
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": chunk}
        self.send(200, json.dumps(doc).encode(), OCI_INDEX, **headers)

    def do_POST(self) -> None:
        found = self.route()
        if found is None:
            return
        name, kind, _, _, _ = found
        self.body()
        upload = hashlib.sha256(str(len(self.reg.requests)).encode()).hexdigest()[:16]
        self.send(202, Location=f"/v2/{name}/blobs/uploads/{upload}")

    def do_PUT(self) -> None:
        found = self.route()
        if found is None:
            return
        name, kind, ref, _, query = found
        data = self.body()
        if kind == "blobs":
            digest = (query.get("digest") or [""])[0]
            if sha256(data) != digest:
                self.error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
                return
            self.reg.blobs[digest] = data
            self.send(201, Location=f"/v2/{name}/blobs/{digest}", Docker_Content_Digest=digest)
            return
        self.put_manifest(name, ref, data)

    def put_manifest(self, name: str, ref: str, data: bytes) -> None:
        reg = self.reg
        if_match, if_none = self.headers.get("If-Match"), self.headers.get("If-None-Match")
        digest, is_tag = sha256(data), not _DIGEST.match(ref)
        with reg.lock:  # the condition and the write as one step
            current = reg.tags.get(f"{name}:{ref}") if is_tag else ref
            exists = f"{name}@{current}" in reg.manifests
            if (if_match and (not exists or if_match.strip() != f'"{current}"')) or (if_none == "*" and exists):
                self.error(412, "PRECONDITION_FAILED", "the manifest changed")
                return
            reg.manifests[f"{name}@{digest}"] = (data, self.headers.get("Content-Type", ""))
            if is_tag:
                reg.tags[f"{name}:{ref}"] = digest
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker_Content_Digest": digest}
        subject = (json.loads(data).get("subject") or {}).get("digest")
        if subject and reg.api == "spec":
            headers["OCI_Subject"] = subject
        self.send(201, **headers)
