"""The legacy Docker Registry v1 + Index protocol, as Docker 1.3's ``registry/session.go`` spoke it.

``V1Client`` is the raw protocol (``Registry(..., api="v1").v1``): every public method is one
documented call or one of Docker 1.3's flows over them (docs/protocol.md §1). Nothing here builds
DataFrames: methods return dicts, lists and small dataclasses.

Two roles (protocol.md §1.1): the **index** (the URL you give: accounts, tokens, search) and the
**registries** it lists in ``X-Docker-Endpoints`` (image JSON, ancestry, layers, tags). A private
Python ``docker-registry`` in ``standalone`` mode plays both on one port.

Auth (§1.4), handled by :class:`V1Auth` through the transport's auth hook:

- the index gets HTTP Basic when you have a username + password (Docker sends it whenever it
  is logged in); ``GET …/images`` / ``PUT …/`` with ``X-Docker-Token: true`` return tokens in
  every ``X-Docker-Token`` response header;
- registries get ``Authorization: Token <t1>,<t2>`` (all tokens of the repository, joined by
  ``,``) unless another Authorization is already set (Basic for a standalone registry, or after
  a ``Basic`` challenge); a leading ``Token `` in a token value (the Python standalone quirk) is
  dropped, so the header never reads ``Token Token …``;
- the registry then answers with a session cookie; the one ``requests.Session`` (shared by the
  index and every registry endpoint) keeps it in its jar;
- tokens are never sent over plain http to a non-loopback host (the transport refuses Basic
  there with :class:`~regexplore.errors.InsecureCredentials`). A 401 from such a registry raises
  :class:`~regexplore.errors.Unauthorized` saying so, as Docker 1.3 did ("Docker will not send
  auth headers over HTTP").

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
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
import urllib3

from ...errors import (
    AlreadyExists,
    DigestMismatch,
    InvalidReference,
    NotFound,
    RegistryError,
    Unauthorized,
    load_json,
)
from ...http.auth import Credentials, parse_challenges, resolve_credentials
from ...http.redact import Scrubber, Secret, shown
from ...http.transport import MiB, RetryPolicy, Transport, base_url_for
from ...http.urls import is_loopback, secure_for_credentials
from ...model.oci import parse_time
from ..hub import parse_v1_search
from ..v2 import request_blob
from .tarsum import PayloadChecksum, TarSum, TarSumError

__all__ = [
    "ImageJSON",
    "LayerDownload",
    "PushResult",
    "RepositoryData",
    "V1Auth",
    "V1Client",
    "V1ImageLike",
    "check_image_id",
    "check_tag",
    "history_row",
    "normalize_repository",
    "parse_content_range",
    "parse_endpoints",
    "parse_repository_images",
    "parse_standalone",
    "parse_tags",
]

JSON_CAP = 8 * MiB  #: image JSON, ancestry, tags, repository data
CHUNK = 256 * 1024  #: layer read / upload block
MAX_LAYER_TRIES = 5  #: Docker 1.3: up to 5 tries for a layer, 5 resumes of its body
HUB_INDEX = "https://index.docker.io"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")  #: a v1 image id (protocol.md §1.3); \Z: "$" would allow a final "\n"
_ID_PREFIX = re.compile(r"[0-9a-f]{0,64}\Z")  #: the Hub's list-form tags: an 8-hex prefix, or ""
#: a v1 tag: the Python registry's RE_VALID_TAG and Docker's ``[\w][\w.-]{0,127}`` (ASCII ``\w``)
_V1_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
#: a v1 repository name, ``[namespace/]name`` with the characters of Docker 1.3's
#: ``validateRepositoryName`` (namespace ``[a-z0-9_-]``, name ``[a-z0-9_.-]``), the name not starting
#: with a dot (so never ``.`` or ``..``)
_V1_NAME = re.compile(r"(?:[a-z0-9_-]+/)?[a-z0-9_-][a-z0-9_.-]*\Z")
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?\Z")
_SIGNATURE = re.compile(r"signature=([^,\s]+)")
_CONTENT_RANGE = re.compile(r"^\s*(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
#: where registries put the layer checksums in the answer to ``GET /v1/images/<id>/json``, in the
#: order they are read: the Python registry's name, the older name (its 2013-14 versions and the
#: 2014 docs), and the push header's name (tolerated)
CHECKSUM_HEADERS = ("X-Docker-Payload-Checksum", "X-Docker-Checksum", "X-Docker-Checksum-Payload")
_DROPS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


# ====================================================================== pure helpers
def normalize_repository(name: str) -> str:
    """``redis`` → ``library/redis``; ``/ns/repo/`` → ``ns/repo`` (Docker 1.3 and the Python
    registry's ``parse_repository_name``). Raises :class:`~regexplore.errors.InvalidReference` (a
    ``ValueError``) for an empty name or one that is not a v1 name (``[namespace/]name`` of
    ``[a-z0-9_.-]``, see :data:`_V1_NAME`): it becomes part of every v1 URL."""
    parts = name.strip().strip("/")
    if not parts:
        raise InvalidReference("empty repository name")
    if not _V1_NAME.match(parts):
        raise InvalidReference(f"not a v1 repository name ([namespace/]name of a-z 0-9 _ . -): {shown(name)}")
    return parts if "/" in parts else f"library/{parts}"


def check_image_id(value: Any, what: str) -> str:
    """``value`` if it is a v1 image id (64 lowercase hex: it becomes a URL part and a file name);
    else ``ValueError`` naming ``what``."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ValueError(f"{what}: not a v1 image id (64 lowercase hex): {shown(value)}")
    return value


def check_tag(value: Any, what: str = "tag") -> str:
    """``value`` if it is a v1 tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``); else ``ValueError``."""
    if not isinstance(value, str) or not _V1_TAG.match(value):
        raise ValueError(f"{what}: not a v1 tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}): {shown(value)}")
    return value


def parse_standalone(value: str | None) -> bool:
    """Docker 1.3's reading of ``X-Docker-Registry-Standalone``: absent or empty → True;
    ``"true"`` (any case) or ``"1"`` → True; anything else (``"False"``, ``"mirror"``) → False."""
    if value is None or value.strip() == "":
        return True
    return value.strip().lower() in ("true", "1")


def parse_endpoints(value: str | None, index_url: str) -> list[str]:
    """Registry base URLs (``scheme://host[:port]``) from ``X-Docker-Endpoints``.

    The value is a comma list of ``host[:port]`` with any whitespace around entries; each gets
    the scheme of ``index_url`` (Docker 1.3 ``buildEndpointsList``). Absent or empty → the
    index itself. Duplicates are dropped, order kept.
    """
    scheme = urlsplit(index_url).scheme or "https"
    out: list[str] = []
    for item in (value or "").split(","):
        host = item.strip()
        if not host:
            continue
        if "://" in host:  # tolerate a full URL (some proxies rewrite the header)
            p = urlsplit(host)
            host = p.netloc
        host = host.rstrip("/")
        m = _HOST_PORT.match(host)
        if not m or (m.group(1) and not 0 < int(m.group(1)) < 65536):
            raise ValueError(f"X-Docker-Endpoints entry {shown(item.strip())} is not host[:port]")
        base = f"{scheme}://{host}"
        if base not in out:
            out.append(base)
    if not out:
        p = urlsplit(index_url)
        out.append(f"{p.scheme}://{p.netloc}")
    return out


def parse_tags(doc: Any) -> dict[str, str]:
    """``{tag: image id}`` from a v1 tags body in either historical form.

    Dict form (registry spec, Python registry): ``{"latest": "<64-hex id>"}``. List form (Docker
    Hub): ``[{"layer": "<8-hex id prefix or \\"\\">", "name": "<tag>"}]`` — the value is then the
    prefix as sent (``""`` when the Hub left it empty). Raises ``ValueError`` for anything else,
    and for a tag or an id (prefix) that is not one (:func:`check_tag`, :func:`check_image_id`).
    """
    if isinstance(doc, dict):
        return {check_tag(k): check_image_id(v, f"tag {k}") for k, v in doc.items()}
    if isinstance(doc, list):
        out: dict[str, str] = {}
        for item in doc:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ValueError(f"not a v1 tag entry: {shown(item)}")
            layer = item.get("layer")
            layer = layer if isinstance(layer, str) else ""
            if not _ID_PREFIX.match(layer):
                raise ValueError(f"tag {shown(item['name'])}: not a v1 image id prefix: {shown(layer)}")
            out[check_tag(item["name"])] = layer
        return out
    raise ValueError("not a v1 tags answer (neither an object nor a list)")


def parse_repository_images(doc: Any) -> list[dict[str, str | None]]:
    """The index's image list ``[{"id", "checksum"[, "Tag"]}]`` → ``[{id, checksum, tag}]``.

    ``checksum`` is None when empty (Docker Hub 2015 sent ``""`` everywhere); ``tag`` comes from
    the 2013 capital-T ``Tag`` (or ``tag``), None when absent. Raises ``ValueError`` when the
    body is not a list of objects with an ``id``, or for an id or tag that is not a v1 one.
    """
    if not isinstance(doc, list):
        raise ValueError("not a v1 repository image list")
    out: list[dict[str, str | None]] = []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError(f"not a v1 image entry: {shown(item)}")
        image_id = check_image_id(item["id"], "image entry")
        tag = item.get("Tag", item.get("tag"))
        tag = check_tag(tag, f"tag of image {image_id[:12]}") if isinstance(tag, str) and tag else None
        out.append({"id": image_id, "checksum": item.get("checksum") or None, "tag": tag})
    return out


def check_image_json(doc: dict[str, Any], image_id: str) -> None:
    """Raise ``ValueError`` unless image JSON ``doc`` is about ``image_id`` (its ``id``, when
    present) and names a v1 image id as its ``parent`` (when set)."""
    if "id" in doc and doc["id"] != image_id:
        raise ValueError(f"its id {shown(doc['id'])} is not the image asked for")
    if doc.get("parent") not in (None, ""):
        check_image_id(doc["parent"], "its parent")


def _cmd_text(container_config: Any) -> str:
    cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return str(cmd) if cmd else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def history_row(step: int, doc: dict[str, Any], size_header: int | None = None) -> dict[str, Any]:
    """One ``history`` row (plus ``id`` and ``parent``) from a v1 image JSON.

    ``created_by`` is ``container_config.Cmd`` joined by spaces (Docker 1.3 ``graph/history.go``;
    ``""`` for imports whose Cmd is null); ``size`` is the registry's ``X-Docker-Size`` (bytes of
    the stored layer) when given and non-negative, else the JSON's ``Size``, else None. Every v1
    image has its own layer, so ``empty_layer`` is False; v1 has no digests (``layer_digest`` and
    ``diff_id`` are None).
    """
    size = size_header if size_header is not None and size_header >= 0 else _int(doc.get("Size"))
    return {
        "step": step,
        "created": parse_time(doc.get("created")),
        "created_by": _cmd_text(doc.get("container_config")),
        "empty_layer": False,
        "size": size,
        "layer_digest": None,
        "diff_id": None,
        "comment": doc.get("comment") or "",
        "id": doc.get("id"),
        "parent": doc.get("parent") or None,
    }


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(start, end, total)`` from ``Content-Range``, with or without the ``bytes `` unit (the
    Python registry omits it); total None for ``*``. None when absent or unreadable."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _token_values(resp: requests.Response) -> list[str]:
    """Every ``X-Docker-Token`` header of a response, each kept whole (tokens contain commas, so
    a merged header value cannot be split)."""
    raw = getattr(resp, "raw", None)
    headers = getattr(raw, "headers", None)
    values: list[str] = []
    if headers is not None and hasattr(headers, "getlist"):
        values = [v for v in headers.getlist("X-Docker-Token") if v and v.strip()]
    if not values and resp.headers.get("X-Docker-Token"):
        values = [resp.headers["X-Docker-Token"]]
    out = []
    for v in values:
        v = v.strip()
        if v[:6].lower() == "token ":  # the Python standalone index's "Token signature=…"
            v = v[6:].strip()
        out.append(Secret(v))
    return out


def _header_values(resp: requests.Response, name: str) -> list[str]:
    """Every comma-separated value of every ``name`` header (RFC 7230 §3.2.2: repeated headers
    and one comma-joined header are the same; checksums never contain a comma)."""
    raw = getattr(resp, "raw", None)
    headers = getattr(raw, "headers", None)
    lines: list[str] = []
    if headers is not None and hasattr(headers, "getlist"):
        lines = list(headers.getlist(name))
    if not lines and resp.headers.get(name):
        lines = [resp.headers[name]]
    return [x.strip() for line in lines for x in line.split(",") if x.strip()]


def _json(resp: requests.Response, what: str) -> Any:
    """The JSON of ``resp``; :class:`RegistryError` naming ``what`` when it is not JSON or is nested
    too deeply (:func:`~regexplore.errors.load_json`)."""
    try:
        return load_json(resp.content or b"null", what, url=resp.url)
    except ValueError:
        raise RegistryError(f"{what}: the answer is not JSON", status=resp.status_code, url=resp.url) from None


# ====================================================================== auth hook
class V1Auth:
    """The v1 auth hook for :class:`~regexplore.http.transport.Transport` (same interface as
    :class:`regexplore.http.auth.RegistryAuth`): Basic for the index, ``Token`` for registries.

    ``scope`` (passed by :class:`V1Client` to every request) is the repository whose tokens
    apply. One instance serves the index and every registry endpoint of a client. Thread-safe.
    ``repr`` shows no secret.
    """

    def __init__(self, credentials: Credentials | None, index_url: str) -> None:
        self.credentials = credentials
        p = urlsplit(index_url)
        self.index_origin = (p.scheme, p.netloc.lower())
        self.index_host = (p.hostname or "").lower()
        self.standalone: bool | None = None  # set by V1Client.ping
        self._basic_origins: set[tuple[str, str]] = set()
        self._token_origins: set[tuple[str, str]] = set()  # registries that refused Basic for Token
        self._tokens: dict[str, list[str]] = {}
        self._refreshers: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        #: cuts the credentials and every token this object holds out of server text
        self.scrubber = Scrubber()
        if credentials is not None:
            credentials.held_by(self.scrubber)

    def __repr__(self) -> str:
        return (f"<V1Auth index={self.index_origin[1]} {self.credentials or 'anonymous'} "
                f"repositories_with_tokens={len(self._tokens)}>")

    @property
    def source(self) -> str:
        """Where the credentials came from (``"anonymous"`` without any)."""
        return self.credentials.source if self.credentials else "anonymous"

    @property
    def _password(self) -> bool:
        return self.credentials is not None and self.credentials.kind == "password"

    # ----------------------------------------------------------------- state
    def set_tokens(self, scope: str, tokens: Sequence[str]) -> None:
        """Replace the tokens of repository ``scope`` (empty: forget them)."""
        with self._lock:
            if tokens:
                self._tokens[scope] = [Secret(t) for t in tokens]  # repr '<redacted>': vars(), locals
            else:
                self._tokens.pop(scope, None)
        # a registry may echo a token whole, or only its signature ("signature=…,repository=…")
        signatures = [m.group(1) for t in tokens for m in _SIGNATURE.finditer(t)]
        self.scrubber.hold(f"tokens {scope}", *tokens, *signatures)

    def token_count(self, scope: str) -> int:
        """How many tokens are held for ``scope`` (the tokens themselves are not exposed)."""
        with self._lock:
            return len(self._tokens.get(scope, ()))

    def set_refresher(self, scope: str, fn: Callable[[], None]) -> None:
        """``fn`` fetches fresh read tokens for ``scope`` (used once per request on a ``Token``
        challenge to a GET, e.g. when a push replaced the read session cookie)."""
        with self._lock:
            self._refreshers[scope] = fn

    def _origin(self, url: str) -> tuple[str, str]:
        p = urlsplit(url)
        return p.scheme, p.netloc.lower()

    def _may_send(self, url: str) -> bool:
        return secure_for_credentials(url)

    def _basic_for(self, url: str) -> bool:
        if not self._password:
            return False
        origin = self._origin(url)
        if origin in self._basic_origins:
            return True  # asked for by a challenge (the transport refuses plain http off loopback)
        if origin in self._token_origins:
            return False
        if not self._may_send(url):
            return False
        if origin == self.index_origin:
            return True  # Docker sends Basic to the index whenever it is logged in
        # Docker 1.3: a standalone private registry over https gets Basic on every request; we keep
        # it to the index's own host (and loopback / https, like the transport's policy)
        return bool(self.standalone) and (urlsplit(url).hostname or "").lower() == self.index_host

    # ----------------------------------------------------------------- the hook
    def headers_for(self, url: str, method: str, scope: str | None) -> dict[str, str]:
        """``Authorization`` for this request: Basic where it applies, else ``Token a,b`` for the
        repository ``scope`` (never over plain http to a non-loopback host), else ``{}``."""
        if self._basic_for(url):
            assert self.credentials is not None
            return {"Authorization": self.credentials.basic_header()}
        if scope and self._may_send(url):
            with self._lock:
                tokens = list(self._tokens.get(scope, ()))
            if tokens:
                return {"Authorization": Secret("Token " + ",".join(tokens))}
        return {}

    def handle_challenge(self, www: str, url: str, method: str, scope: str | None, transport: Any) -> bool:
        """React to a 401: switch this origin to Basic when asked and we hold a password, or (GET
        on a registry) fetch fresh read tokens for ``scope``. True if a retry makes sense."""
        challenges = parse_challenges(www)
        schemes = {c.scheme for c in challenges}
        origin = self._origin(url)
        if "basic" in schemes and self._password and origin not in self._basic_origins:
            if not self._basic_for(url):
                with self._lock:
                    self._basic_origins.add(origin)
                return True
        if ("token" in schemes or not schemes) and origin != self.index_origin \
                and origin not in self._basic_origins and self._basic_for(url):
            # Basic went to a registry only by the standalone rule (Docker 1.3 applies it to https
            # indexes only); this one wants the repository's tokens instead
            with self._lock:
                self._token_origins.add(origin)
            if scope and self.token_count(scope) > 0:
                return True
        if ("token" in schemes or not schemes) and scope and origin != self.index_origin \
                and method.upper() in ("GET", "HEAD"):
            with self._lock:
                refresh = self._refreshers.get(scope)
            if refresh is not None:
                refresh()
                return self.token_count(scope) > 0
        return False


# ====================================================================== results
@dataclass
class RepositoryData:
    """The index's answer to ``GET /v1/repositories/<ns>/<repo>/images`` (or a push start).

    ``images``: ``[{id, checksum, tag}]`` (checksum None when empty); ``endpoints``: registry
    base URLs in the index's order; ``token_count``: how many ``X-Docker-Token`` values came
    (the tokens themselves stay in :class:`V1Auth`, never in a repr).
    """

    repository: str
    images: list[dict[str, str | None]]
    endpoints: list[str]
    token_count: int = 0


@dataclass
class ImageJSON:
    """``GET /v1/images/<id>/json``: ``raw`` (bytes as served; they enter the payload checksum),
    ``doc`` (parsed), ``size`` (``X-Docker-Size``, None when absent or -1), ``payload_checksums``
    (every value of every header of :data:`CHECKSUM_HEADERS` present: ``sha256:`` payload checksums
    or tarsums), ``endpoint`` (the registry that answered), ``checksum_header`` (the first such
    header's name), ``checksum_headers`` (``{value: header name}``)."""

    id: str
    raw: bytes
    doc: dict[str, Any]
    size: int | None
    payload_checksums: list[str]
    endpoint: str
    checksum_header: str | None = None
    checksum_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LayerDownload:
    """One downloaded v1 layer.

    ``verified`` is True only when the bytes matched a checksum the registry or index gave
    (``verified_against`` names it: ``"X-Docker-Payload-Checksum"`` or whichever header carried it,
    ``"index checksum"``);
    with nothing to check against it is False and ``note`` says so. ``checksum`` is the payload
    checksum we computed (``sha256:…`` of JSON + ``\\n`` + layer); ``resumes`` counts ranged
    resumes after dropped connections, ``restarts`` transfers restarted from byte 0.
    """

    image_id: str
    path: Path
    size: int
    verified: bool
    checksum: str
    verified_against: str | None = None
    note: str = ""
    resumes: int = 0
    restarts: int = 0


@dataclass
class PushResult:
    """What :meth:`V1Client.push` did: ``pushed`` image ids, ``skipped`` (the registry already
    had them), ``tags`` set, ``checksums`` ``{id: tarsum or payload checksum}`` sent to the
    index, ``endpoints`` pushed to."""

    repository: str
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] = field(default_factory=list)


class V1ImageLike(Protocol):
    """What :meth:`V1Client.push` needs of an image: ``id`` (64 hex), ``json`` (bytes exactly
    as to upload) and ``layer`` (bytes, a path, or a binary file object)."""

    id: str
    json: bytes
    layer: Any


# ====================================================================== the client
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

    def search(self, term: str, *, limit: int = 25, page: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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
            doc = _json(resp, f"search {term!r}")
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
        return self._remember(name, resp, _json(resp, f"repository images of {name}"))

    def _remember(self, name: str, resp: requests.Response, doc: Any) -> RepositoryData:
        try:
            images = parse_repository_images(doc) if doc not in (None, "") else []
            endpoints = parse_endpoints(resp.headers.get("X-Docker-Endpoints"), self.index_url)
        except ValueError as exc:
            raise RegistryError(f"images of {name}: {exc}", url=resp.url) from None
        tokens = _token_values(resp)
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
                return parse_tags(_json(resp, f"tags of {name}"))
            except ValueError as exc:
                raise RegistryError(f"tags of {name}: {exc}", url=resp.url) from None

        return self._on_endpoints(eps, one, stop_on_404=True)

    def resolve(self, repo: str, ref: str = "latest", *, endpoints: Sequence[str] | None = None) -> str:
        """The full image id of ``ref`` in ``repo``: a 64-hex id as is; a tag through the tags
        list, a Hub-style 8-hex prefix through the index's image list, else the single-tag call
        ``GET …/tags/<tag>``. Raises :class:`NotFound`."""
        if _HEX64.match(ref):
            return ref
        name = normalize_repository(repo)
        eps = self._endpoints(name, endpoints)
        tags = self.tags(name, endpoints=eps)
        if ref not in tags:
            raise NotFound(f"tag {ref!r} not found in {name}")
        value = tags[ref]
        if _HEX64.match(value):
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
                return check_image_id(_json(resp, f"tag {name}:{ref}"), f"tag {name}:{ref}")
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
            doc = _json(resp, what)
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
            doc = _json(resp, f"image json of {image_id[:12]}")
            if not isinstance(doc, dict):
                raise RegistryError(f"image json of {image_id[:12]} is not an object", url=resp.url)
            try:
                check_image_json(doc, image_id)
            except ValueError as exc:
                raise RegistryError(f"image {image_id[:12]}: {exc}", url=resp.url) from None
            size_text = resp.headers.get("X-Docker-Size")
            size = None
            if size_text is not None:
                size = _int(size_text)
                if size is None:
                    raise RegistryError(f"X-Docker-Size is not an integer: {shown(size_text, 40)}", url=resp.url)
                if size < 0:
                    size = None
            # every header counts: a registry may send a tarsum in one and the payload checksum in
            # another (the payload checksum can always be computed, a tarsum not for every layer)
            by_value: dict[str, str] = {}
            for header in CHECKSUM_HEADERS:
                for value in _header_values(resp, header):
                    by_value.setdefault(value, header)
            sums = list(by_value)
            return ImageJSON(image_id, resp.content, doc, size, sums, ep,
                             by_value[sums[0]] if sums else None, by_value)

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
        if not _token_values(resp):
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
        summer: TarSum | None = TarSum(decompress=True)
        payload = PayloadChecksum(raw_json)
        state = {"tarsum": summer}

        def body() -> Iterator[bytes]:
            done = 0
            for chunk in _layer_chunks(layer):
                payload.update(chunk)
                ts = state["tarsum"]
                if ts is not None:
                    try:
                        ts.update(chunk)
                    except TarSumError:
                        state["tarsum"] = None
                done += len(chunk)
                if progress:
                    progress(done, None)
                yield chunk

        self._registry_put(endpoint, f"/v1/images/{image_id}/layer", normalize_repository(repo),
                           f"push layer {image_id[:12]}", data=body(),
                           headers={"Content-Type": "application/octet-stream"})
        tarsum_value = None
        ts = state["tarsum"]
        if ts is not None:
            try:
                tarsum_value = ts.sum(raw_json)
            except TarSumError:
                tarsum_value = None
        return tarsum_value, payload.checksum

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
            if not _HEX64.match(img.id):
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


# ====================================================================== layer fetch machinery
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
