"""The OCI Distribution / Docker Registry HTTP API v2: bytes and dicts in, bytes and dicts out.

``V2Client`` is the raw protocol (``Registry(...).v2``): every method is one documented call
(docs/protocol.md §2), with pagination followed and digests verified. Nothing here builds
DataFrames.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any
from urllib.parse import quote, urljoin

from .. import _env
from ..errors import (
    Denied,
    DigestMismatch,
    NotFound,
    RegistryError,
    ResponseTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    load_json,
)
from ..http.redact import shown
from ..http.transport import MiB, Transport
from ..model.oci import (
    MANIFEST_ACCEPT,
    SCHEMA1_SIGNED,
    Manifest,
    check_digest,
    schema1_payload,
    sha256_digest,
)

__all__ = [
    "LISTING_CAP",
    "MANIFEST_CAP",
    "MAX_LIST_ENTRIES_ENV",
    "MAX_LIST_PAGES_ENV",
    "PagedListing",
    "V2Client",
    "cap_from_env",
    "check_header_digest",
    "next_link",
    "parse_link_header",
    "refused_by_storage",
    "request_blob",
]

MANIFEST_CAP = 8 * MiB
LISTING_CAP = 64 * MiB
CATALOG_PAGE = 1000
#: Environment variable capping the pages one paged listing follows (catalog, tags, Hub tags and search).
MAX_LIST_PAGES_ENV = "REGEXPLORE_MAX_LIST_PAGES"
DEFAULT_MAX_LIST_PAGES = 10_000
#: Environment variable capping the names one paged listing collects.
MAX_LIST_ENTRIES_ENV = "REGEXPLORE_MAX_LIST_ENTRIES"
DEFAULT_MAX_LIST_ENTRIES = 1_000_000
UPLOAD_READ = MiB  #: the smallest read a streamed upload body makes


def cap_from_env(name: str, default: int) -> int:
    """The positive whole number in environment variable ``name``, or ``default`` when it is unset or
    empty. Read at each call, like ``REGEXPLORE_MAX_LAYER_BYTES``. Raises ``ValueError`` naming the
    variable for anything else."""
    return _env.whole(name, default)


class PagedListing:
    """The bounds of one paged listing (``Link`` or ``next`` pages): at most ``$REGEXPLORE_MAX_LIST_PAGES``
    pages (default 10,000) and ``$REGEXPLORE_MAX_LIST_ENTRIES`` names (default 1,000,000), and progress on
    every page: a page of names that were all listed before means the server pages without end.

    Call :meth:`page` with each page's names, then :meth:`follow` before asking for the next page."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.max_pages = cap_from_env(MAX_LIST_PAGES_ENV, DEFAULT_MAX_LIST_PAGES)
        self.max_entries = cap_from_env(MAX_LIST_ENTRIES_ENV, DEFAULT_MAX_LIST_ENTRIES)
        self.pages = 0
        self.entries = 0
        self._seen: set[str] = set()

    def page(self, names: Iterable[Any], url: str | None = None) -> None:
        """Count one page. Raises :class:`ResponseTooLarge` past the entries cap, :class:`RegistryError`
        for a non-empty page that repeats only names already listed."""
        names = list(names)
        self.pages += 1
        self.entries += len(names)
        if self.entries > self.max_entries:
            raise ResponseTooLarge(f"{self.what}: more than {self.max_entries} entries in {self.pages} pages; "
                                   f"raise {MAX_LIST_ENTRIES_ENV} to list more", url=url)
        new = {n if isinstance(n, str) else repr(n) for n in names} - self._seen  # a hostile list may hold lists
        if names and not new:
            raise RegistryError(f"{self.what}: page {self.pages} repeats only names already listed (no progress: "
                                "the server pages without end)", url=url)
        self._seen |= new

    def follow(self, url: str | None = None) -> None:
        """Before asking for another page: raises :class:`ResponseTooLarge` when the pages cap is reached."""
        if self.pages >= self.max_pages:
            raise ResponseTooLarge(f"{self.what}: more than {self.max_pages} pages ({self.entries} entries so "
                                   f"far); raise {MAX_LIST_PAGES_ENV} to follow more", url=url)

# one link-value of a Link header (RFC 8288): <target> then ;-separated params whose values may
# be quoted strings holding commas or semicolons
_LINK_TARGET = re.compile(r"\s*,?\s*<([^>]*)>")
_LINK_PARAM = re.compile(r'\s*;\s*([^\s=;,]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,]*))?')


def parse_link_header(value: str | None) -> list[tuple[str, dict[str, str]]]:
    """``[(target, {param: value})]`` from a ``Link`` header, targets as written.

    Each link is read from its ``<…>`` brackets, so commas inside a target (``last=a,b``) or
    inside a quoted parameter (``title="a, b"``) never split it. Parameter names are lower-cased;
    quoted values are unquoted. Unreadable text ends the parse.
    """
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    text = value or ""
    while True:
        m = _LINK_TARGET.match(text, pos)
        if not m:
            return out
        target, params = m.group(1).strip(), {}
        pos = m.end()
        while True:
            pm = _LINK_PARAM.match(text, pos)
            if not pm:
                break
            raw = (pm.group(2) or "").strip()
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params.setdefault(pm.group(1).lower(), raw)
            pos = pm.end()
        out.append((target, params))


def next_link(value: str | None, base: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, resolved against ``base`` (relative or
    absolute links, any parameter order, ``rel`` lists such as ``"next last"``); None if absent."""
    for target, params in parse_link_header(value):
        if "next" in params.get("rel", "").lower().split():
            return urljoin(base, target)
    return None


def _with_query(url: str, **extra: str) -> str:
    """``url`` with ``key=value`` pairs appended after ``&`` (or ``?``): the existing query is kept
    byte for byte (an upload ``Location`` may carry opaque signed state, protocol.md §2.6);
    values are percent-encoded except ``:`` (``digest=sha256:…`` goes out verbatim)."""
    base, hash_, fragment = url.partition("#")
    pairs = "&".join(f"{quote(k, safe='')}={quote(str(v), safe=':')}" for k, v in extra.items())
    if not pairs:
        return url
    sep = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    return f"{base}{sep}{pairs}{hash_}{fragment}"


_DIGEST_ALGS = ("sha256", "sha384", "sha512")


def check_header_digest(header: str, m: Manifest, *, url: str | None = None,
                        what: str = "manifest (Docker-Content-Digest)") -> None:
    """Check a ``Docker-Content-Digest`` value against manifest ``m`` with the header's own
    algorithm (sha256, sha384 or sha512, hashed over the bytes the digest covers).

    Raises :class:`DigestMismatch`, or :class:`UnsupportedMediaType` naming an algorithm that
    cannot be verified (never silently accepted).
    """
    value = header.strip()
    if value == m.digest:
        return
    alg, _, hexpart = value.partition(":")
    if alg not in _DIGEST_ALGS or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise UnsupportedMediaType(f"{what}: cannot verify {shown(value)} (regexplore verifies "
                                   f"{', '.join(_DIGEST_ALGS)} digests)", url=url)
    covered = schema1_payload(m.raw) if m.media_type == SCHEMA1_SIGNED else m.raw
    check_digest(covered, value, url=url, what=what)


def refused_by_storage(t: Transport, exc: RegistryError) -> bool:
    """True when ``exc`` is a 4xx (not 416 or 429) answered by another origin than ``t``'s
    registry: the signed storage / CDN URL a blob GET was redirected to refused it (an expired
    signature, protocol.md §5). The registry issues a fresh redirect when asked again."""
    status = exc.status or 0
    return 400 <= status < 500 and status not in (416, 429) and bool(exc.url) \
        and not t.same_origin(exc.url or "")


def request_blob(t: Transport, method: str, path: str, **kw: Any) -> Any:
    """``t.request(method, path, **kw)`` for a blob (v2) or layer (v1) URL; when the storage hop
    it was redirected to refuses it (:func:`refused_by_storage`) the request is sent once more
    to the registry URL, which answers with a fresh redirect. ``kw`` (a ``Range`` for the bytes
    already on disk) is sent again unchanged."""
    try:
        return t.request(method, path, **kw)
    except RegistryError as exc:
        if not refused_by_storage(t, exc):
            raise
    return t.request(method, path, **kw)


def _next_page(resp: Any, visited: set[str], what: str, bounds: PagedListing) -> str | None:
    """The ``rel="next"`` URL of a listing page; a link back to a page already read (a server
    that would page forever) raises :class:`RegistryError` instead of looping, and one past the
    pages cap of ``bounds`` :class:`ResponseTooLarge`."""
    visited.add(resp.url)
    url = next_link(resp.headers.get("Link"), resp.url)
    if url is not None and url in visited:
        raise RegistryError(f"{what}: the registry's Link header points back to a page already read "
                            f"({len(visited)} pages so far)", status=resp.status_code, url=url)
    if url is not None:
        bounds.follow(url)
    return url


def _listing(resp: Any, key: str, what: str) -> list:
    """The ``key`` list of a catalog / tags JSON body (``null`` or absent: empty, as distribution
    answers ``"tags": null`` for a repository whose tags were all deleted); a body that is not a
    JSON object raises :class:`RegistryError` naming the URL instead of a bare ``ValueError``."""
    try:
        doc = load_json(resp.content or b"{}", what, url=resp.url)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get(key) or [], list):
        ctype = resp.headers.get("Content-Type") or "no Content-Type"
        raise RegistryError(f"{what}: the answer is not a JSON listing ({ctype})", status=resp.status_code,
                            url=resp.url)
    return list(doc.get(key) or [])


class V2Client:
    """Raw v2 calls against one registry's :class:`Transport`."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    def __repr__(self) -> str:
        return f"V2Client({self.t.base_url!r})"

    # ----------------------------------------------------------------- discovery
    def ping(self, answer: Any = None) -> dict:
        """``GET /v2/``: status, ``Docker-Distribution-API-Version`` and the auth scheme offered
        (the challenge is answered first when credentials allow). Returns a dict. ``answer``: a
        response to ``GET /v2/`` just received (no second request then)."""
        resp = answer if answer is not None else self.t.request("GET", "/v2/", ok=(200, 401), max_bytes=MiB,
                                                                what="ping")
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
        ``PAGINATION_NUMBER_INVALID`` is asked again without ``n`` (its own default). Pages are
        followed within the bounds of :class:`PagedListing`: :class:`ResponseTooLarge` past its
        pages or entries cap, :class:`RegistryError` for a page that brings nothing new.
        """
        n = min(page_size or CATALOG_PAGE, limit or CATALOG_PAGE)
        url: str | None = self.t.url(f"/v2/_catalog?n={n}")
        seen = 0
        visited: set[str] = set()
        bounds = PagedListing("catalog")
        while url:
            try:
                resp = self.t.request("GET", url, max_bytes=LISTING_CAP, what="catalog")
            except RegistryError as exc:
                if exc.code == "PAGINATION_NUMBER_INVALID" and "n=" in url and seen == 0:
                    url = self.t.url("/v2/_catalog")
                    continue
                raise
            repos = _listing(resp, "repositories", "catalog")
            bounds.page(repos, resp.url)
            if limit is not None:
                repos = repos[: max(0, limit - seen)]
            seen += len(repos)
            yield repos
            if limit is not None and seen >= limit:
                return
            url = _next_page(resp, visited, "catalog", bounds)

    def tags(self, repo: str, *, page_size: int | None = None, limit: int | None = None) -> list[str]:
        """All tags of ``repo`` from ``/v2/<repo>/tags/list``, following ``Link`` pages. A
        ``page_size`` the server refuses (``PAGINATION_NUMBER_INVALID``) is dropped, and pages are
        followed within the bounds of :class:`PagedListing`, as in :meth:`catalog`."""
        path = f"/v2/{repo}/tags/list"
        url: str | None = self.t.url(f"{path}?n={page_size}" if page_size else path)
        out: list[str] = []
        visited: set[str] = set()
        bounds = PagedListing(f"tags of {repo}")
        while url:
            try:
                resp = self.t.request("GET", url, max_bytes=LISTING_CAP, what=f"tags of {repo}")
            except RegistryError as exc:
                if exc.code == "PAGINATION_NUMBER_INVALID" and page_size and not out:
                    url, page_size = self.t.url(path), None
                    continue
                raise
            page = _listing(resp, "tags", f"tags of {repo}")
            bounds.page(page, resp.url)
            out.extend(page)
            if limit is not None and len(out) >= limit:
                return out[:limit]
            url = _next_page(resp, visited, f"tags of {repo}", bounds)
        return out

    # ----------------------------------------------------------------- manifests
    def get_manifest(self, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT) -> Manifest:
        """``GET /v2/<repo>/manifests/<reference>`` with a full ``Accept`` list.

        The digest is computed from the raw bytes and checked against ``Docker-Content-Digest``
        (with that header's own algorithm) and against ``reference`` when it is a digest. Raises
        :class:`NotFound`, :class:`DigestMismatch`, :class:`UnsupportedMediaType` (a header digest
        that cannot be verified), :class:`ResponseTooLarge` (over 8 MiB).
        """
        resp = self.t.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept},
                              max_bytes=MANIFEST_CAP, what=f"manifest {repo}:{reference}")
        raw = resp.content
        expected = reference if ":" in reference else None
        m = Manifest.from_bytes(raw, resp.headers.get("Content-Type"), expected=expected, url=resp.url,
                                what=f"manifest {repo}:{reference}")
        header = resp.headers.get("Docker-Content-Digest")
        if header:
            check_header_digest(header, m, url=resp.url)
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
        """``PUT /v2/<repo>/manifests/<reference>``; returns the sha256 digest, checked against the
        registry's ``Docker-Content-Digest`` (in whatever algorithm the registry chose)."""
        self.push_manifest(repo, reference, raw, media_type)
        return sha256_digest(raw)

    def push_manifest(self, repo: str, reference: str, raw: bytes, media_type: str, *,
                      headers: dict[str, str] | None = None) -> Any:
        """:meth:`put_manifest` with extra request ``headers`` (``If-Match`` …); returns the response, whose
        headers say more (``OCI-Subject``). Raises what :meth:`put_manifest` raises; a failed condition is
        :class:`RegistryError` with status 412."""
        digest = sha256_digest(raw)
        resp = self.t.request("PUT", f"/v2/{repo}/manifests/{reference}", data=raw,
                              headers={"Content-Type": media_type, **(headers or {})}, ok=(200, 201, 202),
                              retry_body=True, what=f"push manifest {repo}:{reference}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got.strip() != digest:
            pushed = Manifest(raw, media_type, digest, {})
            try:
                check_header_digest(got, pushed, url=resp.url, what="pushed manifest (Docker-Content-Digest)")
            except DigestMismatch:
                raise DigestMismatch(digest, got.strip(), url=resp.url, what="pushed manifest") from None
        return resp

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
        :mod:`regexplore.content.blobs`, which streams to disk."""
        resp = request_blob(self.t, "GET", f"/v2/{repo}/blobs/{digest}", max_bytes=max_bytes,
                            what=f"blob {digest[:19]}")
        check_digest(resp.content, digest, url=resp.url, what="blob")
        return resp.content

    def get_json_blob(self, repo: str, digest: str) -> dict:
        """A config (or other JSON) blob, verified and parsed. Raises :class:`UnsupportedMediaType`
        when it is not a JSON object (an artifact's config may be YAML, binary, a JSON array…)."""
        raw = self.get_blob(repo, digest, max_bytes=MANIFEST_CAP * 2)
        try:
            doc = load_json(raw, f"blob {digest[:19]} of {repo}", error=UnsupportedMediaType)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise UnsupportedMediaType(f"blob {digest[:19]} of {repo} is not a JSON object ({len(raw)} bytes)")
        return doc

    def open_blob(self, repo: str, digest: str, *, offset: int = 0, end: int | None = None) -> Any:
        """A streaming response for a blob (redirects followed without credentials), from
        ``offset`` (a closed ``Range`` when ``end`` is known; a refused storage hop is asked for
        again once, :func:`request_blob`). The caller closes it and checks ``status_code`` (206 or
        200: a server may ignore Range) and ``Content-Range`` (a 206 may cover less than asked)."""
        headers = {}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        return request_blob(self.t, "GET", f"/v2/{repo}/blobs/{digest}", headers=headers, stream=True,
                            ok=(200, 206), what=f"blob {digest[:19]}")

    def delete_blob(self, repo: str, digest: str) -> None:
        self.t.request("DELETE", f"/v2/{repo}/blobs/{digest}", ok=(200, 202), what="delete blob")

    # ----------------------------------------------------------------- uploads
    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount (``POST …/uploads/?mount=&from=``): True if mounted (201); False if the
        registry started an upload instead (202, which is then cancelled) or refused the mount
        (401 / 403: the credentials may not pull ``from_repo``, as Docker's pusher then uploads;
        a push the credentials may not make is refused again by the upload that follows)."""
        try:
            resp = self.t.request("POST", f"/v2/{repo}/blobs/uploads/", ok=(201, 202), what="mount blob",
                                  params={"mount": digest, "from": from_repo}, retry_body=True)
        except (Unauthorized, Denied):
            return False
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

        :meth:`upload_stream` with ``data`` as the source: monolithic by default, chunked with
        ``chunk_size``. Raises :class:`DigestMismatch` if ``data`` does not hash to ``digest``, and
        :class:`RegistryError` from the registry.
        """
        digest = digest or sha256_digest(data)
        check_digest(data, digest, what="upload")
        self.upload_stream(repo, digest, len(data), data, chunk_size=chunk_size, progress=progress)
        return digest

    def upload_stream(self, repo: str, digest: str, size: int, source: bytes | Callable[[], IO[bytes]], *,
                      chunk_size: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Upload one blob of ``size`` bytes in one upload session (protocol.md §2.6).

        ``source`` is the bytes, or an opener returning a file to read them from (read once, never
        held whole in memory). ``POST …/blobs/uploads/``, then either one ``PUT ?digest=`` with the
        body (monolithic, the default) or, with ``chunk_size``, ``PATCH`` blocks of ``chunk_size``
        (raised to the registry's ``OCI-Chunk-Min-Length``) with ``Content-Range``, each sent to
        the newest ``Location``, finished by an empty ``PUT ?digest=``. ``progress`` gets the
        bytes sent as they go. Returns None.

        Raises :class:`RegistryError` from the registry, ``OSError`` if the file ends early.
        """
        resp = self.t.request("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,), what="start upload",
                              headers={"Content-Length": "0"}, retry_body=True)
        location = urljoin(resp.url, resp.headers["Location"])
        with _open_source(source) as f:
            if chunk_size:
                min_len = resp.headers.get("OCI-Chunk-Min-Length")
                if min_len and min_len.isdigit():
                    chunk_size = max(chunk_size, int(min_len))
                location = self._upload_chunks(location, f, digest, size, chunk_size, progress)
                self.t.request("PUT", _with_query(location, digest=digest), ok=(201,), what="finish upload",
                               headers={"Content-Length": "0"})
                return
            body: Any = source if isinstance(source, bytes) else _UploadBody(f, size, progress)
            self.t.request("PUT", _with_query(location, digest=digest), data=body, ok=(201,), what="upload blob",
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            if progress and isinstance(source, bytes):
                progress(size)

    def _upload_chunks(self, location: str, f: IO[bytes], digest: str, size: int, chunk_size: int,
                       progress: Callable[[int], None] | None) -> str:
        """``PATCH`` ``f`` in ``chunk_size`` blocks with ``Content-Range``; returns the last ``Location``.

        Raises ``OSError`` if ``f`` ends before ``size`` bytes, :class:`RegistryError` from the registry.
        """
        pos = 0
        while pos < size:
            block = f.read(min(chunk_size, size - pos))
            if not block:
                raise OSError(f"blob {digest[:19]} ended at byte {pos} of {size} while uploading "
                              "(did the file change?)")
            r = self.t.request("PATCH", location, data=block, ok=(202,), what="upload chunk",
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Range": f"{pos}-{pos + len(block) - 1}",
                                        "Content-Length": str(len(block))})
            location = urljoin(r.url, r.headers.get("Location") or location)
            pos += len(block)
            if progress:
                progress(len(block))
        return location


def _open_source(source: bytes | Callable[[], IO[bytes]]) -> IO[bytes]:
    """A file over ``source``: the bytes in memory, or what the opener returns."""
    return io.BytesIO(source) if isinstance(source, bytes) else source()


class _UploadBody:
    """A file-like request body: a known length, big reads, bytes counted for progress."""

    def __init__(self, f: IO[bytes], length: int, on_bytes: Callable[[int], None] | None) -> None:
        self.f = f
        self.left = length
        self.on_bytes = on_bytes

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        """Up to ``max(n, UPLOAD_READ)`` bytes (all that is left for ``n < 0``); b"" at the end."""
        want = self.left if n is None or n < 0 else min(max(n, UPLOAD_READ), self.left)
        block = self.f.read(want) if want else b""
        self.left -= len(block)
        if block and self.on_bytes:
            self.on_bytes(len(block))
        return block
