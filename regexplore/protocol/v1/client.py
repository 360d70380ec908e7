"""The legacy Docker Registry v1 + Index protocol, as Docker 1.3's ``registry/session.go`` spoke it.

``V1Client`` is the raw protocol (``Registry(..., api="v1").v1``): every public method is one
documented call or one of Docker 1.3's flows over them (docs/protocol.md §1). Nothing here builds
DataFrames: methods return dicts, lists and small dataclasses.

Two roles (protocol.md §1.1): the **index** (the URL you give: accounts, tokens, search) and the
**registries** it lists in ``X-Docker-Endpoints`` (image JSON, ancestry, layers, tags). A private
Python ``docker-registry`` in ``standalone`` mode plays both on one port.

Auth (§1.4) is :class:`~regexplore.protocol.v1.auth.V1Auth`, the transport's auth hook (Basic for the
index, ``Token`` for registries; its docstring has the rules). Registries answer with a session cookie,
which the one ``requests.Session`` (shared by the index and every registry endpoint) keeps in its jar. A
401 from a plain-http, non-loopback registry raises :class:`~regexplore.errors.Unauthorized` saying that
tokens are never sent there, as Docker 1.3 did ("Docker will not send auth headers over HTTP").

v1 has no content digests. A downloaded layer is verified against the checksums the registry
sends with the image JSON — ``X-Docker-Payload-Checksum`` (the Python registry; older versions and
the 2014 docs call it ``X-Docker-Checksum``), each ``sha256(image JSON + "\\n" + layer)`` or a
``tarsum+sha256:`` — and, when given, the index's checksum for the image (same two forms);
:class:`LayerDownload` says when nothing could be verified.

Example
-------
>>> v1 = V1Client.connect("http://127.0.0.1:5000", auth=("alice", "pw"))     # doctest: +SKIP
>>> v1.tags("alice/app")                                                      # doctest: +SKIP
{'latest': '5f2e…'}
>>> v1.history("alice/app", "latest")[0]["created_by"]                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ...errors import AlreadyExists, DigestMismatch, NotFound, RegistryError, Unauthorized
from ...http.auth import Credentials, resolve_credentials
from ...http.redact import shown
from ...http.transport import MiB, RetryPolicy, Transport, base_url_for
from ...http.urls import is_loopback
from ..hub import parse_v1_search
from ..v2 import request_blob
from .auth import V1Auth
from .checksum import LayerChecks
from .parse import (
    answer_json,
    check_image_id,
    check_tag,
    history_row,
    is_image_id,
    normalize_repository,
    parse_endpoints,
    parse_repository_images,
    parse_standalone,
    parse_tags,
    read_image_json,
    token_values,
)
from .results import ImageJSON, PushResult, RepositoryData, V1ImageLike

__all__ = ["V1Client"]

JSON_CAP = 8 * MiB  #: image JSON, ancestry, tags, repository data
CHUNK = 256 * 1024  #: layer upload block
HUB_INDEX = "https://index.docker.io"


class V1Client:
    """Raw v1 calls (Index + Registry) for one index URL.

    Parameters
    ----------
    transport
        The index's :class:`Transport`. Its ``auth`` is replaced by this client's
        :class:`V1Auth`; registries on other origins get their own transports that share its
        ``requests.Session`` (so one cookie jar), its trace and its retry policy.
    credentials
        Username + password for Basic (or None: anonymous).
    ping
        Ping the index on first use to learn ``standalone`` (Docker 1.3 does so for every index
        but Docker Hub's). Default: True except for ``index.docker.io``.
    """

    def __init__(self, transport: Transport, credentials: Credentials | None = None, *,
                 ping: bool | None = None) -> None:
        self.t = transport
        self.index_url = transport.base_url
        self.auth = V1Auth(credentials, self.index_url)
        transport.auth = self.auth
        self._transports: dict[str, Transport] = {self.index_url: transport}
        self._quick: dict[str, Transport] = {}  # the same, without retries: see _on_endpoints
        self._trying_next = threading.local()
        self._repos: dict[str, RepositoryData] = {}
        self._lock = threading.Lock()
        self._want_ping = (urlsplit(self.index_url).hostname != "index.docker.io") if ping is None else ping
        self._pinged: dict[str, Any] | None = None

    @classmethod
    def connect(cls, url: str, *, auth: Any = None, verify: bool | str = True, timeout: float = 30.0,
                retry: RetryPolicy | None = None, ping: bool | None = None) -> V1Client:
        """A client for index ``url`` with its own transport. ``auth``: ``(user, password)``,
        :class:`Credentials`, False (anonymous) or None (Docker config, else anonymous)."""
        text = url.strip().rstrip("/")
        host = urlsplit(text if "://" in text else "//" + text).netloc
        if host.lower() in ("docker.io", "index.docker.io", "registry.hub.docker.com"):
            base = HUB_INDEX
        else:
            base = base_url_for(text)
        t = Transport(base, verify=verify, timeout=timeout, retry=retry)
        return cls(t, resolve_credentials(urlsplit(base).netloc, auth), ping=ping)

    def __repr__(self) -> str:
        return f"V1Client({self.index_url!r}, auth={self.auth.source})"

    def close(self) -> None:
        """Close every transport (the shared session once)."""
        self.t.close()

    # ----------------------------------------------------------------- plumbing
    def _transport(self, endpoint: str) -> Transport:
        """The transport for a registry base URL (created on first use, sharing the session)."""
        base = endpoint.rstrip("/")
        base = base.removesuffix("/v1")
        with self._lock:
            t = self._transports.get(base)
            if t is None:
                t = Transport(base, auth=self.auth, verify=self.t.session.verify, timeout=self.t.timeout,
                              retry=self.t.retry)
                t.session.close()
                t.session = self.t.session  # one cookie jar for the whole session, like Docker 1.3
                t.trace_records = self.t.trace_records
                t._trace_lock = self.t._trace_lock
                self._transports[base] = t
            if getattr(self._trying_next, "on", False):  # another endpoint remains: no retries here
                quick = self._quick.get(base)
                if quick is None:
                    quick = self._quick[base] = copy.copy(t)  # shares session, jars, trace
                    quick.retry = RetryPolicy(attempts=1)
                return quick
            return t

    def _ensure_ping(self) -> None:
        if self._want_ping and self._pinged is None:
            try:
                self.ping()
            except RegistryError:
                self._pinged = {"status": None, "standalone": None}

    def _endpoints(self, repo: str, endpoints: Sequence[str] | None) -> list[str]:
        if endpoints is not None:
            return [e.rstrip("/") for e in endpoints]
        with self._lock:
            data = self._repos.get(repo)
        if data is None:
            data = self.repository_data(repo)
        return data.endpoints

    def _on_endpoints(self, endpoints: Sequence[str], fn: Callable[[str], Any], *, stop_on_404: bool) -> Any:
        """Call ``fn(endpoint)`` on each endpoint until one succeeds; a 404 stops at once when
        ``stop_on_404`` (Docker 1.3's tags), any other failure tries the next one."""
        last: RegistryError | None = None
        for i, ep in enumerate(endpoints):
            # like Docker 1.3, an endpoint that fails is left for the next one at once; only the
            # last one gets the transport's retries (429/5xx/dropped connections with backoff)
            self._trying_next.on = i + 1 < len(endpoints)
            try:
                return fn(ep)
            except NotFound as exc:
                if stop_on_404:
                    raise
                last = exc
            except (Unauthorized, AlreadyExists, DigestMismatch):
                raise
            except RegistryError as exc:
                last = exc
            finally:
                self._trying_next.on = False
        if last is None:
            raise RegistryError("the index listed no registry endpoints")
        raise last

    def _get(self, endpoint: str, path: str, repo: str | None, what: str, **kw: Any) -> requests.Response:
        return self._transport(endpoint).request("GET", path, scope=repo, max_bytes=JSON_CAP, what=what, **kw)

    # ----------------------------------------------------------------- index
    def ping(self) -> dict[str, Any]:
        """``GET /v1/_ping`` on the index. Returns ``{url, status, version, standalone,
        standalone_header, authenticated}``; ``standalone`` follows Docker 1.3 (absent → True,
        ``true``/``1`` → True, anything else → False). A 401 (a registry behind htpasswd) is
        answered with Basic when credentials allow, else reported with ``authenticated`` False.
        """
        resp = self.t.request("GET", "/v1/_ping", ok=(200, 401), max_bytes=MiB, what="v1 ping")
        header = resp.headers.get("X-Docker-Registry-Standalone")
        standalone = parse_standalone(header) if resp.status_code == 200 else None
        self.auth.standalone = standalone
        out = {
            "url": self.index_url,
            "status": resp.status_code,
            "version": resp.headers.get("X-Docker-Registry-Version"),
            "standalone": standalone,
            "standalone_header": header,
            "authenticated": resp.status_code == 200,
        }
        self._pinged = out
        return out

    def search(self, term: str, *, limit: int = 25,
               page: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``GET <index>/v1/search?q=<term>&n=<n>&page=<p>`` (``X-Docker-Token: true``, Basic when
        logged in). Returns ``(rows, meta)``: rows ``{name, description, stars, official,
        automated, pulls}`` (every historical shape, :func:`regexplore.protocol.hub.parse_v1_search`),
        ``meta`` ``{total, page, num_pages, page_size, query}``. Without ``page``, pages are
        followed until ``limit`` rows or the last page; ``n`` is ``limit`` clamped to 1..100."""
        n = max(1, min(100, limit))
        rows: list[dict[str, Any]] = []
        meta: dict[str, Any] = {}
        current = page or 1
        while True:
            params = {"q": term, "n": str(n)}
            if page is not None or current > 1:
                params["page"] = str(current)
            resp = self.t.request("GET", "/v1/search", params=params, headers={"X-Docker-Token": "true"},
                                  max_bytes=JSON_CAP, what=f"search {term!r}")
            doc = answer_json(resp, f"search {term!r}")
            try:
                got, meta = parse_v1_search(doc)
                for row in got:  # a name the user may pass back: it becomes a URL part
                    if row["name"] is not None:
                        normalize_repository(row["name"])
            except ValueError as exc:
                raise RegistryError(f"search: {exc}", url=resp.url) from None
            meta["query"] = doc.get("query", term) if isinstance(doc, dict) else term
            rows.extend(got)
            if page is not None or not got or len(rows) >= limit:
                break
            num_pages = meta.get("num_pages")
            if num_pages is None or current >= num_pages:
                break
            current += 1
        return rows[:limit], meta

    def repository_data(self, repo: str) -> RepositoryData:
        """``GET <index>/v1/repositories/<ns>/<repo>/images`` with ``X-Docker-Token: true`` (and
        Basic when logged in): the image list, the registry endpoints, and fresh read tokens (kept
        in :attr:`auth` for ``repo``). Raises :class:`NotFound`, :class:`Unauthorized` (private
        repository, "login required")."""
        name = normalize_repository(repo)
        self._ensure_ping()
        resp = self.t.request("GET", f"/v1/repositories/{quote(name)}/images", headers={"X-Docker-Token": "true"},
                              max_bytes=JSON_CAP, what=f"images of {name}")
        return self._remember(name, resp, answer_json(resp, f"repository images of {name}"))

    def _remember(self, name: str, resp: requests.Response, doc: Any) -> RepositoryData:
        try:
            images = parse_repository_images(doc) if doc not in (None, "") else []
            endpoints = parse_endpoints(resp.headers.get("X-Docker-Endpoints"), self.index_url)
        except ValueError as exc:
            raise RegistryError(f"images of {name}: {exc}", url=resp.url) from None
        tokens = token_values(resp)
        self.auth.set_tokens(name, tokens)
        self.auth.set_refresher(name, lambda: self.repository_data(name) and None)
        data = RepositoryData(name, images, endpoints, len(tokens))
        with self._lock:
            self._repos[name] = data
        return data

    # ----------------------------------------------------------------- registry: reading
    def tags(self, repo: str, *, endpoints: Sequence[str] | None = None) -> dict[str, str]:
        """``GET <registry>/v1/repositories/<ns>/<repo>/tags`` → ``{tag: image id}`` (dict or Docker
        Hub's list form; then the value is the 8-hex prefix, or ``""``). Tries each endpoint: a 404
        stops (:class:`NotFound`), other failures try the next one."""
        name = normalize_repository(repo)
        eps = self._endpoints(name, endpoints)

        def one(ep: str) -> dict[str, str]:
            resp = self._get(ep, f"/v1/repositories/{quote(name)}/tags", name, f"tags of {name}")
            try:
                return parse_tags(answer_json(resp, f"tags of {name}"))
            except ValueError as exc:
                raise RegistryError(f"tags of {name}: {exc}", url=resp.url) from None

        return self._on_endpoints(eps, one, stop_on_404=True)

    def resolve(self, repo: str, ref: str = "latest", *, endpoints: Sequence[str] | None = None) -> str:
        """The full image id of ``ref`` in ``repo``: a 64-hex id as is; a tag through the tags
        list, a Hub-style 8-hex prefix through the index's image list, else the single-tag call
        ``GET …/tags/<tag>``. Raises :class:`NotFound`."""
        if is_image_id(ref):
            return ref
        name = normalize_repository(repo)
        eps = self._endpoints(name, endpoints)
        tags = self.tags(name, endpoints=eps)
        if ref not in tags:
            raise NotFound(f"tag {ref!r} not found in {name}")
        value = tags[ref]
        if is_image_id(value):
            return value
        if value:
            with self._lock:
                data = self._repos.get(name)
            ids = [i["id"] for i in (data.images if data else []) if str(i["id"]).startswith(value)]
            if len(set(ids)) == 1:
                return str(ids[0])

        def one(ep: str) -> str:
            resp = self._get(ep, f"/v1/repositories/{quote(name)}/tags/{quote(ref)}", name, f"tag {name}:{ref}")
            try:
                return check_image_id(answer_json(resp, f"tag {name}:{ref}"), f"tag {name}:{ref}")
            except ValueError as exc:
                raise RegistryError(str(exc), url=resp.url) from None

        return self._on_endpoints(eps, one, stop_on_404=True)

    def ancestry(self, image_id: str, *, repo: str, endpoints: Sequence[str] | None = None) -> list[str]:
        """``GET <registry>/v1/images/<id>/ancestry`` → ``[id, parent, …, base]`` (self first).
        Raises :class:`RegistryError` when an entry is not a v1 image id, ``ValueError`` when
        ``image_id`` is not one."""
        name = normalize_repository(repo)
        check_image_id(image_id, "image id")

        def one(ep: str) -> list[str]:
            what = f"ancestry of {image_id[:12]}"
            resp = self._get(ep, f"/v1/images/{image_id}/ancestry", name, what)
            doc = answer_json(resp, what)
            if not isinstance(doc, list) or not all(isinstance(i, str) for i in doc):
                raise RegistryError(f"{what} is not a JSON list of ids", url=resp.url)
            try:
                return [check_image_id(i, what) for i in doc]
            except ValueError as exc:
                raise RegistryError(str(exc), url=resp.url) from None

        return self._on_endpoints(self._endpoints(name, endpoints), one, stop_on_404=False)

    def image_json(self, image_id: str, *, repo: str, endpoints: Sequence[str] | None = None) -> ImageJSON:
        """``GET <registry>/v1/images/<id>/json``: the raw JSON, ``X-Docker-Size`` (a non-integer
        value is an error, as in Docker 1.3) and the layer checksums (``X-Docker-Payload-Checksum``,
        or the older ``X-Docker-Checksum``). Raises :class:`NotFound` when no endpoint has it,
        :class:`RegistryError` when the JSON's ``id`` is another image or its ``parent`` no v1 id."""
        name = normalize_repository(repo)
        check_image_id(image_id, "image id")

        def one(ep: str) -> ImageJSON:
            resp = self._get(ep, f"/v1/images/{image_id}/json", name, f"image {image_id[:12]}")
            return read_image_json(resp, image_id, ep)

        return self._on_endpoints(self._endpoints(name, endpoints), one, stop_on_404=False)

    def image_exists(self, image_id: str, *, repo: str, endpoints: Sequence[str] | None = None) -> bool:
        """Docker 1.3's ``LookupRemoteImage``: True when some endpoint serves the image JSON."""
        try:
            self.image_json(image_id, repo=repo, endpoints=endpoints)
        except NotFound:
            return False
        return True

    def history(self, repo: str, ref: str = "latest") -> list[dict[str, Any]]:
        """docker-history rows for ``repo:ref`` from the ancestry and each image's JSON, oldest
        first (step 0 = the base image), like the v2 history. Columns: the ``history`` table's
        plus ``id`` and ``parent`` (see :func:`history_row`)."""
        name = normalize_repository(repo)
        data = self.repository_data(name)
        top = self.resolve(name, ref, endpoints=data.endpoints)
        chain = self.ancestry(top, repo=name, endpoints=data.endpoints)
        rows = []
        for step, image_id in enumerate(reversed(chain)):
            meta = self.image_json(image_id, repo=name, endpoints=data.endpoints)
            rows.append(history_row(step, meta.doc, meta.size))
        return rows

    # ----------------------------------------------------------------- registry: layers
    def open_layer(self, meta: ImageJSON, repo: str, start: int = 0) -> requests.Response:
        """``GET <registry>/v1/images/<id>/layer`` (streamed) from byte ``start``: ``Range:
        bytes=<start>-`` (Docker 1.3's open range) when ``start`` > 0. ``meta`` is the image's
        :meth:`image_json` (its endpoint answers). Returns the 200, 206 or 416 response as is (the
        Python registry's 206 has a ``Content-Range`` without the ``bytes`` unit, ending at the size,
        and a 416 for a range at the end or an empty layer); a layer redirected to storage whose
        signed URL is refused (4xx) is asked for again at the registry, once per request. The
        fetch engine (:mod:`regexplore.content.v1layers`) reads, resumes and verifies it."""
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        return request_blob(self._transport(meta.endpoint), "GET", f"/v1/images/{meta.id}/layer", headers=headers,
                            stream=True, ok=(200, 206, 416), scope=normalize_repository(repo),
                            what=f"layer {meta.id[:12]}")

    # ----------------------------------------------------------------- push (Docker 1.3's order)
    def push_start(self, repo: str, image_ids: Sequence[str]) -> RepositoryData:
        """``PUT <index>/v1/repositories/<ns>/<repo>/`` (Basic, ``X-Docker-Token: true``, body
        ``[{"id": …}]``); 3xx are followed, re-sending the PUT. Both ``X-Docker-Token`` and
        ``X-Docker-Endpoints`` are required in the answer (write tokens are kept for ``repo``).
        Raises :class:`Unauthorized` (no or wrong credentials), :class:`RegistryError`."""
        name = normalize_repository(repo)
        self._ensure_ping()
        body = json.dumps([{"id": i} for i in image_ids]).encode()
        resp = self.t.request("PUT", f"/v1/repositories/{quote(name)}/", data=body, retry_body=True,
                              headers={"X-Docker-Token": "true", "Content-Type": "application/json"},
                              ok=(200, 201), what=f"push {name}")
        if not token_values(resp):
            raise RegistryError(f"push {name}: the index sent no X-Docker-Token", status=resp.status_code,
                                url=resp.url)
        if not (resp.headers.get("X-Docker-Endpoints") or "").strip():
            raise RegistryError(f"push {name}: the index sent no X-Docker-Endpoints", status=resp.status_code,
                                url=resp.url)
        data = self._remember(name, resp, None)
        data.images = [{"id": i, "checksum": None, "tag": None} for i in image_ids]
        return data

    def _registry_put(self, endpoint: str, path: str, repo: str, what: str, **kw: Any) -> requests.Response:
        """A registry PUT; maps "Image already exists" to :class:`AlreadyExists` and a 401 from a
        plain-http registry to an :class:`Unauthorized` that says why."""
        t = self._transport(endpoint)
        try:
            return t.request("PUT", path, scope=repo, what=what, ok=(200, 201), max_bytes=MiB, **kw)
        except Unauthorized as exc:
            if urlsplit(t.base_url).scheme == "http":
                sent = "; on loopback the token was sent and refused" if is_loopback(t.host) else ""
                raise Unauthorized(
                    f"{what}: HTTP 401 from a plain-http registry. Auth headers (tokens, Basic) are not "
                    f"sent over plain HTTP to a non-loopback host (Docker 1.3: 'Docker will not send auth "
                    f"headers over HTTP'); serve the registry over https{sent}",
                    status=401, url=exc.url) from None
            raise
        except RegistryError as exc:
            if "image already exists" in (exc.message or "").lower():
                raise AlreadyExists(exc.message, status=exc.status, url=exc.url) from None
            raise

    def put_image_json(self, endpoint: str, repo: str, image_id: str, raw: bytes) -> None:
        """``PUT <registry>/v1/images/<id>/json`` (``Content-Type: application/json``, Token auth).
        Raises :class:`AlreadyExists`, :class:`Unauthorized`."""
        self._registry_put(endpoint, f"/v1/images/{image_id}/json", normalize_repository(repo),
                           f"push json {image_id[:12]}", data=bytes(raw), retry_body=True,
                           headers={"Content-Type": "application/json"})

    def put_image_layer(self, endpoint: str, repo: str, image_id: str, raw_json: bytes, layer: Any, *,
                        progress: Callable[[int, int | None], None] | None = None) -> tuple[str | None, str]:
        """``PUT <registry>/v1/images/<id>/layer``, chunked (``Transfer-Encoding: chunked``), while
        computing the tarsum (v0, over the decompressed tar, ``extra`` = the JSON) and the payload
        checksum. Returns ``(tarsum or None when the layer is not a tar, payload checksum)``."""
        checks = LayerChecks(raw_json, want_tarsum=True)

        def body() -> Iterator[bytes]:
            done = 0
            for chunk in _layer_chunks(layer):
                checks.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, None)
                yield chunk

        self._registry_put(endpoint, f"/v1/images/{image_id}/layer", normalize_repository(repo),
                           f"push layer {image_id[:12]}", data=body(),
                           headers={"Content-Type": "application/octet-stream"})
        return checks.tarsum_value(), checks.payload.checksum

    def put_image_checksum(self, endpoint: str, repo: str, image_id: str, tarsum_value: str | None,
                           payload: str) -> None:
        """``PUT <registry>/v1/images/<id>/checksum`` with ``X-Docker-Checksum`` (the tarsum, when
        there is one) and ``X-Docker-Checksum-Payload``; cookies of the answer go to the jar."""
        headers = {"X-Docker-Checksum-Payload": payload}
        if tarsum_value:
            headers["X-Docker-Checksum"] = tarsum_value
        self._registry_put(endpoint, f"/v1/images/{image_id}/checksum", normalize_repository(repo),
                           f"push checksum {image_id[:12]}", headers=headers, data=b"", retry_body=True)

    def put_tag(self, endpoint: str, repo: str, tag: str, image_id: str) -> None:
        """``PUT <registry>/v1/repositories/<ns>/<repo>/tags/<tag>`` with body ``"<id>"`` (JSON).
        Raises ``ValueError`` for a tag or an id that is not a v1 one."""
        name = normalize_repository(repo)
        check_tag(tag)
        check_image_id(image_id, f"tag {tag}")
        self._registry_put(endpoint, f"/v1/repositories/{quote(name)}/tags/{quote(tag)}", name,
                           f"push tag {tag}", data=json.dumps(image_id).encode(), retry_body=True,
                           headers={"Content-Type": "application/json"})

    def push_finish(self, repo: str, checksums: dict[str, str], endpoints: Sequence[str]) -> None:
        """``PUT <index>/v1/repositories/<ns>/<repo>/images`` (validate): Basic, request header
        ``X-Docker-Endpoints``, body ``[{"id", "checksum"}]`` (images without a checksum are
        left out, as Docker 1.3 did). Expects 204."""
        name = normalize_repository(repo)
        body = json.dumps([{"id": i, "checksum": c} for i, c in checksums.items() if c]).encode()
        hosts = ",".join(urlsplit(e).netloc for e in endpoints)
        self.t.request("PUT", f"/v1/repositories/{quote(name)}/images", data=body, retry_body=True,
                       headers={"X-Docker-Endpoints": hosts, "X-Docker-Token": "true",
                                "Content-Type": "application/json"},
                       ok=(204,), what=f"push {name} (validate)")

    def push(self, repo: str, images: Sequence[V1ImageLike], tags: dict[str, str] | Iterable[str] | None = None,
             *, progress: Callable[[int, int | None], None] | None = None) -> PushResult:
        """Push a chain of images (base first) and tags, in Docker 1.3's order: index start
        (:meth:`push_start`), then per registry endpoint and image JSON → layer → checksum (an
        image the registry already has is skipped and listed in ``skipped``), then the tags, then
        the index validation (:meth:`push_finish`).

        ``tags``: ``{tag: image id}``, or tag names for the last image. Raises
        :class:`Unauthorized`, :class:`RegistryError`; :class:`AlreadyExists` never escapes.
        """
        name = normalize_repository(repo)
        images = list(images)
        if not images:
            raise ValueError("nothing to push")
        for img in images:
            if not is_image_id(img.id):
                raise ValueError(f"not a v1 image id (64 hex): {shown(img.id)}")
        if tags is None:
            tag_map: dict[str, str] = {}
        elif isinstance(tags, dict):
            tag_map = dict(tags)
        else:
            tag_map = {t: images[-1].id for t in tags}
        data = self.push_start(name, [i.id for i in images])
        result = PushResult(name, endpoints=list(data.endpoints), tags=tag_map)
        for ep in data.endpoints:
            for img in images:
                raw = bytes(img.json)
                try:
                    self.put_image_json(ep, name, img.id, raw)
                except AlreadyExists:
                    if img.id not in result.skipped:
                        result.skipped.append(img.id)
                    continue
                tarsum_value, payload = self.put_image_layer(ep, name, img.id, raw, img.layer, progress=progress)
                self.put_image_checksum(ep, name, img.id, tarsum_value, payload)
                result.checksums[img.id] = tarsum_value or payload
                if img.id not in result.pushed:
                    result.pushed.append(img.id)
            for tag, image_id in tag_map.items():
                self.put_tag(ep, name, tag, image_id)
        self.push_finish(name, result.checksums, data.endpoints)
        with self._lock:
            self._repos.pop(name, None)  # write tokens are spent; a later read fetches read tokens
        self.auth.set_tokens(name, [])
        return result


def _layer_chunks(layer: Any) -> Iterator[bytes]:
    """Blocks of a layer given as bytes, a path or a binary file object."""
    if isinstance(layer, (bytes, bytearray, memoryview)):
        view = memoryview(layer)
        for i in range(0, len(view), CHUNK):
            yield bytes(view[i:i + CHUNK])
        return
    if isinstance(layer, (str, os.PathLike)):
        with open(layer, "rb") as f:
            yield from iter(lambda: f.read(CHUNK), b"")
        return
    if hasattr(layer, "read"):
        yield from iter(lambda: layer.read(CHUNK), b"")
        return
    raise TypeError("layer must be bytes, a path or a binary file object")
