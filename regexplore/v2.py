"""The OCI Distribution / Docker Registry HTTP API v2: bytes and dicts in, bytes and dicts out.

``V2Client`` is the raw protocol (``Registry(...).v2``): every method is one documented call
(docs/protocol.md §2), with pagination followed and digests verified. Nothing here builds
DataFrames.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit, parse_qsl

from .errors import DigestMismatch, NotFound, RegistryError
from .oci import MANIFEST_ACCEPT, Manifest, check_digest, sha256_digest
from .transport import MiB, Transport

__all__ = ["V2Client", "next_link", "MANIFEST_CAP", "LISTING_CAP"]

MANIFEST_CAP = 8 * MiB
LISTING_CAP = 64 * MiB
CATALOG_PAGE = 1000

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


def next_link(value: str | None, base: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, resolved against ``base`` (relative or
    absolute links, any parameter order)."""
    if not value:
        return None
    for m in _LINK.finditer(value):
        params = m.group(2)
        if re.search(r'rel\s*=\s*"?next"?', params):
            return urljoin(base, m.group(1))
    return None


def _with_query(url: str, **extra: str) -> str:
    p = urlsplit(url)
    q = parse_qsl(p.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(q), p.fragment))


class V2Client:
    """Raw v2 calls against one registry's :class:`Transport`."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    def __repr__(self) -> str:
        return f"V2Client({self.t.base_url!r})"

    # ----------------------------------------------------------------- discovery
    def ping(self) -> dict:
        """``GET /v2/``: status, ``Docker-Distribution-API-Version`` and the auth scheme offered
        (the challenge is answered first when credentials allow). Returns a dict."""
        resp = self.t.request("GET", "/v2/", ok=(200, 401), max_bytes=MiB, what="ping")
        www = resp.headers.get("WWW-Authenticate")
        return {
            "url": self.t.base_url,
            "status": resp.status_code,
            "api_version": resp.headers.get("Docker-Distribution-API-Version"),
            "auth_scheme": www.split(" ", 1)[0] if www else None,
            "authenticated": resp.status_code == 200,
        }

    def catalog(self, *, page_size: int | None = None, limit: int | None = None) -> Iterator[list[str]]:
        """Yield pages of repository names from ``/v2/_catalog``, following ``Link``.

        Starts with ``n=page_size`` (default 1000); a server that refuses that size with
        ``PAGINATION_NUMBER_INVALID`` is asked again without ``n`` (its own default).
        """
        n = min(page_size or CATALOG_PAGE, limit or CATALOG_PAGE)
        url: str | None = self.t.url(f"/v2/_catalog?n={n}")
        seen = 0
        while url:
            try:
                resp = self.t.request("GET", url, max_bytes=LISTING_CAP, what="catalog")
            except RegistryError as exc:
                if exc.code == "PAGINATION_NUMBER_INVALID" and "n=" in url and seen == 0:
                    url = self.t.url("/v2/_catalog")
                    continue
                raise
            repos = list(json.loads(resp.content or b"{}").get("repositories") or [])
            if limit is not None:
                repos = repos[: max(0, limit - seen)]
            seen += len(repos)
            yield repos
            if limit is not None and seen >= limit:
                return
            url = next_link(resp.headers.get("Link"), resp.url)

    def tags(self, repo: str, *, page_size: int | None = None, limit: int | None = None) -> list[str]:
        """All tags of ``repo`` from ``/v2/<repo>/tags/list``, following ``Link`` pages."""
        path = f"/v2/{repo}/tags/list"
        if page_size:
            path += f"?n={page_size}"
        url: str | None = self.t.url(path)
        out: list[str] = []
        while url:
            resp = self.t.request("GET", url, max_bytes=LISTING_CAP, what=f"tags of {repo}")
            doc = json.loads(resp.content or b"{}")
            out.extend(doc.get("tags") or [])
            if limit is not None and len(out) >= limit:
                return out[:limit]
            url = next_link(resp.headers.get("Link"), resp.url)
        return out

    # ----------------------------------------------------------------- manifests
    def get_manifest(self, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT) -> Manifest:
        """``GET /v2/<repo>/manifests/<reference>`` with a full ``Accept`` list.

        The digest is computed from the raw bytes and checked against ``Docker-Content-Digest``
        and against ``reference`` when it is a digest. Raises :class:`NotFound`,
        :class:`DigestMismatch`, :class:`ResponseTooLarge` (over 8 MiB).
        """
        resp = self.t.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept},
                              max_bytes=MANIFEST_CAP, what=f"manifest {repo}:{reference}")
        raw = resp.content
        expected = reference if ":" in reference else None
        m = Manifest.from_bytes(raw, resp.headers.get("Content-Type"), expected=expected, url=resp.url)
        header = resp.headers.get("Docker-Content-Digest")
        if header and header.startswith("sha256:") and header != m.digest:
            raise DigestMismatch(header, m.digest, url=resp.url, what="manifest (Docker-Content-Digest)")
        return m

    def head_manifest(self, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT) -> dict:
        """``HEAD /v2/<repo>/manifests/<reference>`` → ``{digest, media_type, size}`` (digest may
        be None on registries that omit ``Docker-Content-Digest``). Does not count as a pull on
        Docker Hub."""
        resp = self.t.request("HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept},
                              what=f"manifest {repo}:{reference}")
        cl = resp.headers.get("Content-Length")
        return {
            "digest": resp.headers.get("Docker-Content-Digest"),
            "media_type": (resp.headers.get("Content-Type") or "").split(";")[0].strip() or None,
            "size": int(cl) if cl and cl.isdigit() else None,
        }

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        """``PUT /v2/<repo>/manifests/<reference>``; returns the digest, checked against the
        registry's ``Docker-Content-Digest``."""
        digest = sha256_digest(raw)
        resp = self.t.request("PUT", f"/v2/{repo}/manifests/{reference}", data=raw,
                              headers={"Content-Type": media_type}, ok=(200, 201, 202), retry_body=True,
                              what=f"push manifest {repo}:{reference}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatch(digest, got, url=resp.url, what="pushed manifest")
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        """``DELETE /v2/<repo>/manifests/<digest>`` (202)."""
        self.t.request("DELETE", f"/v2/{repo}/manifests/{digest}", ok=(200, 202), what="delete manifest")

    # ----------------------------------------------------------------- blobs
    def blob_exists(self, repo: str, digest: str) -> bool:
        """``HEAD /v2/<repo>/blobs/<digest>``: True on 200, False on 404."""
        try:
            self.t.request("HEAD", f"/v2/{repo}/blobs/{digest}", what="blob")
        except NotFound:
            return False
        return True

    def blob_size(self, repo: str, digest: str) -> int | None:
        resp = self.t.request("HEAD", f"/v2/{repo}/blobs/{digest}", what="blob")
        cl = resp.headers.get("Content-Length")
        return int(cl) if cl and cl.isdigit() else None

    def get_blob(self, repo: str, digest: str, *, max_bytes: int = LISTING_CAP) -> bytes:
        """A whole (small) blob, verified against ``digest``. For layers use
        :mod:`regexplore.blobs`, which streams to disk."""
        resp = self.t.request("GET", f"/v2/{repo}/blobs/{digest}", max_bytes=max_bytes, what=f"blob {digest[:19]}")
        check_digest(resp.content, digest, url=resp.url, what="blob")
        return resp.content

    def get_json_blob(self, repo: str, digest: str) -> dict:
        """A config (or other JSON) blob, verified and parsed."""
        return json.loads(self.get_blob(repo, digest, max_bytes=MANIFEST_CAP * 2))

    def open_blob(self, repo: str, digest: str, *, offset: int = 0, end: int | None = None) -> Any:
        """A streaming response for a blob (redirects followed without credentials), from
        ``offset`` (a closed ``Range`` when ``end`` is known). The caller closes it and checks
        ``status_code`` (206 or 200: a server may ignore Range)."""
        headers = {}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        return self.t.request("GET", f"/v2/{repo}/blobs/{digest}", headers=headers, stream=True,
                              ok=(200, 206), what=f"blob {digest[:19]}")

    def delete_blob(self, repo: str, digest: str) -> None:
        self.t.request("DELETE", f"/v2/{repo}/blobs/{digest}", ok=(200, 202), what="delete blob")

    # ----------------------------------------------------------------- uploads
    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount (``POST …/uploads/?mount=&from=``): True if mounted (201); False if the
        registry started an upload instead (202, which is then cancelled)."""
        resp = self.t.request("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo},
                              ok=(201, 202), what="mount blob", retry_body=True)
        if resp.status_code == 201:
            return True
        loc = resp.headers.get("Location")
        if loc:
            try:
                self.t.request("DELETE", self.t.url(urljoin(resp.url, loc)), ok=(200, 204, 202, 404))
            except RegistryError:
                pass
        return False

    def upload_blob(self, repo: str, data: bytes, digest: str | None = None, *,
                    chunk_size: int | None = None,
                    progress: Callable[[int], None] | None = None) -> str:
        """Upload ``data`` as a blob; returns its digest.

        Monolithic (POST, then PUT with the body) by default; with ``chunk_size`` a chunked
        upload (PATCH with ``Content-Range``, honouring ``OCI-Chunk-Min-Length``, using the newest
        ``Location`` each time), finished by ``PUT ?digest=``.
        """
        digest = digest or sha256_digest(data)
        check_digest(data, digest, what="upload")
        resp = self.t.request("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,), what="start upload",
                              headers={"Content-Length": "0"}, retry_body=True)
        location = urljoin(resp.url, resp.headers["Location"])
        if chunk_size:
            min_len = resp.headers.get("OCI-Chunk-Min-Length")
            if min_len and min_len.isdigit():
                chunk_size = max(chunk_size, int(min_len))
            pos = 0
            while pos < len(data):
                part = data[pos: pos + chunk_size]
                r = self.t.request("PATCH", location, data=part, ok=(202,), what="upload chunk",
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"{pos}-{pos + len(part) - 1}",
                                            "Content-Length": str(len(part))})
                location = urljoin(r.url, r.headers.get("Location") or location)
                pos += len(part)
                if progress:
                    progress(len(part))
            self.t.request("PUT", _with_query(location, digest=digest), ok=(201,), what="finish upload",
                           headers={"Content-Length": "0"})
        else:
            self.t.request("PUT", _with_query(location, digest=digest), data=data, ok=(201,),
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(len(data))}, what="upload blob")
            if progress:
                progress(len(data))
        return digest
