"""``LocalV1Registry``: a legacy Docker v1 Index + Registry on loopback, in-process (stdlib only).

No public v1 registry survives, so this module is how a notebook shows "the same kind of image
through the v1 protocol" and how the test suite checks :mod:`regexplore.protocol.v1.client`. It is a **teaching
and test server, not for production**: everything lives in memory and is gone at ``stop()``;
passwords are kept in plain text; tokens are random strings, not signed; there is no TLS, no
rate limit, no storage driver and no mirror mode; it binds 127.0.0.1 by default.

What it does is faithful, as far as those sources go: behaviour follows the 2014 Docker docs
(``registry_api.md``, ``hub_registry_spec.md``, ``docker-io_api.md``), the Python
``docker-registry`` server (``docker_registry/{app,images,tags,index,search,toolkit}.py``,
``lib/checksums.py``) and what Docker 1.3's ``registry/session.go`` expects. See
``/work/shared/docs/protocol.md`` section 1. Every body and header shape below is one of those
sources'; nothing is a convenience of this server. Where the sources disagree a knob picks
(``tags_form``, ``token_prefix``, ``standalone_header``, ``odd_whitespace``, ``checksum_header``,
``content_range``).

Two roles:

* **index** (own port unless ``standalone``): ``/v1/_ping``, ``/v1/search``, ``GET /v1/users``
  (login check), ``GET|PUT /v1/repositories/<name>/images``, ``PUT|DELETE /v1/repositories/<name>/``.
  Basic auth; tokens (``X-Docker-Token``) are issued only when the request carries
  ``X-Docker-Token: true``; ``X-Docker-Endpoints`` lists the registry.
* **registry**: ``/v1/_ping``, ``/v1/images/<id>/{json,layer,ancestry,checksum}``,
  ``/v1/repositories/<name>/tags[/<tag>]``, ``DELETE /v1/repositories/<name>/``. Token auth:
  a token is valid for its repository and access (read: GET, write: PUT/POST, delete: DELETE),
  single use by default (the index "invalidates the token" once the registry checked it); the
  registry then grants a session cookie that authorises later requests.

``standalone=True`` emulates the Python registry with ``standalone: true``: one port serves both
roles, tokens carry the ``Token `` prefix (the Python ``generate_headers`` quirk) and are not
checked; with ``users`` set, every request needs valid Basic auth (as with nginx + htpasswd in
front of it).

``seed=True`` preloads ``demo/busybox``: three images built with :meth:`V1Image.build` (a base
"rootfs", a ``#(nop) CMD`` step whose layer is an empty tar, an app step), tags ``1.0`` (the
middle image) and ``latest`` (the top one); the same bytes and ids on every run (see
:func:`seed_content`).

Every request is logged in :attr:`LocalV1Registry.requests` with credentials redacted (what the
client sent, what the server answered: tokens, endpoints, cookies) — the headers a client's own
trace does not keep.

Example
-------
>>> with LocalV1Registry(seed=True, users={"demo": "pw"}) as srv:     # doctest: +SKIP
...     reg = srv.client()                        # rx.Registry(srv.url, api="v1", auth=...)
...     reg.history("demo/busybox:latest")

Building content by hand (``V1Server`` is the same class, the name the test suite uses):

>>> with LocalV1Registry(users={"alice": "pw"}) as srv:              # doctest: +SKIP
...     base = V1Image.build(files={"etc/hello": b"hi\\n"})
...     top = V1Image.build(parent=base, files={"bin/run": b"#!/bin/sh\\n"})
...     srv.preload("alice/app", [base, top], tags={"latest": top.id})
...     srv.index_url, srv.registry_url
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from ..protocol.v1.tarsum import PayloadChecksum, TarSum, TarSumError

__all__ = ["LocalV1Registry", "V1Server", "V1Image", "seed_content", "SEED_REPOSITORY"]

_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")  # the Python registry's RE_VALID_TAG
_AUTH_RE = re.compile(r'(\w+)[:=][\s"]?([^",]+)"?')  # toolkit._re_authorization
_IMAGE_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_CACHE_TTL = 31536000  # images.set_cache_headers: one year


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def _tar_of(files: Mapping[str, bytes], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class V1Image:
    """One v1 image: its 64-hex id, its JSON exactly as stored and served, and its layer bytes.

    ``json`` is served byte for byte and enters the payload checksum, so keep it as bytes.
    """

    id: str
    json: bytes
    layer: bytes

    @property
    def parent(self) -> str | None:
        """The parent image id from the JSON, or ``None`` for a base image."""
        return json.loads(self.json).get("parent") or None

    @classmethod
    def build(
        cls,
        *,
        parent: "V1Image | None" = None,
        files: Mapping[str, bytes] | None = None,
        cmd: Sequence[str] | None = None,
        created: str = "2014-10-16T19:39:20.185302941Z",
        seed: str = "",
        layer: bytes | None = None,
    ) -> "V1Image":
        """Build an image whose JSON has the shape Docker 1.3 pushed (compact Go encoding).

        Parameters
        ----------
        parent
            The parent image, or ``None`` for a base image (then the JSON has no ``parent``).
        files
            Files of the layer (a plain ustar tar is generated); ignored when ``layer`` is given.
        cmd
            ``container_config.Cmd`` (``null`` when omitted, as for imported images).
        created
            RFC 3339 creation time.
        seed
            Mixed into the id so that equal content can still give distinct images.
        layer
            Raw layer bytes to use as is (e.g. gzip-compressed, or deliberately not a tar).

        Returns
        -------
        V1Image
        """
        if layer is None:
            layer = _tar_of(files or {}, mtime=1413488360)
        digest = hashlib.sha256()
        for part in (parent.id if parent else "", seed, created, json.dumps(list(cmd or []))):
            digest.update(part.encode() + b"\0")
        digest.update(layer)
        image_id = digest.hexdigest()
        container_config: dict[str, Any] = {
            "Hostname": "", "Domainname": "", "User": "", "Memory": 0, "MemorySwap": 0,
            "CpuShares": 0, "Cpuset": "", "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "PortSpecs": None, "ExposedPorts": None, "Tty": False,
            "OpenStdin": False, "StdinOnce": False,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": list(cmd) if cmd is not None else None, "Image": parent.id if parent else "",
            "Volumes": None, "WorkingDir": "", "Entrypoint": None, "NetworkDisabled": False,
            "OnBuild": None,
        }
        doc: dict[str, Any] = {"id": image_id}
        if parent is not None:
            doc["parent"] = parent.id
        doc.update({
            "created": created,
            "container": hashlib.sha256(image_id.encode()).hexdigest(),
            "container_config": container_config,
            "docker_version": "1.3.0",
            "config": dict(container_config, Cmd=None),
            "architecture": "amd64",
            "os": "linux",
            "Size": len(layer),
        })
        return cls(image_id, json.dumps(doc, separators=(",", ":")).encode(), layer)


SEED_REPOSITORY = "demo/busybox"  #: what ``seed=True`` preloads
SEED_DESCRIPTION = "busybox-like demo image (regexplore's local v1 registry)"


def seed_content() -> tuple[list[V1Image], dict[str, str]]:
    """The images and tags ``seed=True`` stores in :data:`SEED_REPOSITORY`; the same every call.

    Three images, base first, as ``docker build`` on Docker 1.3 made them (one image per step):

    0. the root filesystem (``#(nop) ADD file:… in /``): ``bin/busybox``, ``etc/os-release``,
       ``etc/passwd``;
    1. ``#(nop) CMD [/bin/sh]``: changes no file, yet is an image of its own (its layer is an
       empty tar) — tagged ``1.0``;
    2. a ``RUN`` step writing ``usr/local/bin/app`` — tagged ``latest``.

    Returns
    -------
    (images, tags)
        ``[V1Image, V1Image, V1Image]`` (base first) and ``{"1.0": <id of 1>, "latest": <id of 2>}``.
    """
    rootfs = {
        "bin/busybox": b"\x7fELF" + hashlib.sha256(b"busybox").digest() * 256,
        "etc/os-release": b'NAME="Demo BusyBox"\nID=busybox\nVERSION_ID=1.0\n',
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
    }
    added = hashlib.sha256(_tar_of(rootfs, mtime=1413488360)).hexdigest()
    base = V1Image.build(files=rootfs, cmd=["/bin/sh", "-c", f"#(nop) ADD file:{added} in /"],
                         created="2014-10-01T20:46:07.263351912Z")
    cmd = V1Image.build(parent=base, cmd=["/bin/sh", "-c", "#(nop) CMD [/bin/sh]"],
                        created="2014-10-01T20:46:08.914288461Z")
    app = V1Image.build(
        parent=cmd,
        files={"usr/local/bin/app": b"#!/bin/sh\necho hello from the v1 protocol\n"},
        cmd=["/bin/sh", "-c", "printf '#!/bin/sh\\necho hello from the v1 protocol\\n' > /usr/local/bin/app"],
        created="2014-10-16T19:39:20.185302941Z",
    )
    return [base, cmd, app], {"1.0": cmd.id, "latest": app.id}


@dataclass
class _StoredImage:
    json: bytes
    ancestry: list[str]
    layer: bytes | None = None
    checksums: list[str] = field(default_factory=list)  # what the Python server keeps in _checksum
    tarsum: str | None = None  # computed at upload when the layer is a readable tar
    uploading: bool = False  # the Python server's "_inprogress" mark


@dataclass
class _Repo:
    images: list[dict[str, str]] = field(default_factory=list)  # the index's [{"id", "checksum"}]
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    private: bool = False


@dataclass
class _Token:
    repository: str
    access: str
    used: bool = False


@dataclass
class _Session:
    repository: str
    access: str


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------
class LocalV1Registry:
    """In-process v1 Index and Registry on loopback ports; a context manager.

    Parameters
    ----------
    users
        ``{username: password}`` accepted by the index's Basic auth (and, in standalone mode,
        required on every request when not empty).
    tags_form
        ``"dict"`` (registry spec / Python server: ``{"latest": "<id>"}``), ``"list"`` (Docker
        Hub: ``[{"layer": "<8 hex>", "name": "latest"}]``) or ``"list-empty"`` (Hub later:
        ``"layer": ""``).
    standalone
        Python registry ``standalone: true`` mode (see the module docstring).
    standalone_header
        Override the ``X-Docker-Registry-Standalone`` value (default ``"True"``/``"False"`` as
        the Python server prints ``bool``; the Python mirror flavour sent ``"mirror"``).
    registry_version
        ``X-Docker-Registry-Version`` on every response.
    token_prefix
        Put ``Token `` before issued tokens (the Python standalone quirk). Default: only in
        standalone mode; the non-standalone index sends the docs' bare
        ``signature=…,repository="ns/repo",access=read``.
    tokens_per_response
        How many ``X-Docker-Token`` headers the index sends (Docker 1.3 joins them with ``,``).
    token_reuse
        Allow a token to be presented again without the session cookie (default: single use).
    extra_endpoints
        Further hosts appended to ``X-Docker-Endpoints`` (e.g. an unreachable one).
    odd_whitespace
        Format ``X-Docker-Endpoints`` as Docker's mock server did: ``"a \\t,  b "``.
    push_redirect
        Status (e.g. 302/307) the index answers to the first ``PUT /v1/repositories/<name>/``
        of each push, with ``Location`` pointing back at itself (Docker 1.3 re-sends the PUT).
    accept_ranges
        Advertise ``Accept-Ranges: bytes`` on layer GETs and honour ``Range``.
    drop_layer_after, drop_layer_times
        Fault injection: cut the connection after sending this many bytes of a layer body,
        for the first ``drop_layer_times`` layer GETs (then serve normally).
    checksum_header
        The header carrying the stored layer checksums on ``GET /v1/images/<id>/json`` (one
        header per checksum, as Flask sends a list): ``"X-Docker-Payload-Checksum"`` (default: the
        Python registry, ``images._get_image_json``) or ``"X-Docker-Checksum"`` (its 2013-14
        versions and the 2014 ``registry_api.md``).
    content_range
        How a ranged layer GET is answered. ``"python"`` (default) is ``images._get_image_layer``:
        ``Content-Range: <start>-<end>/<size>`` without the ``bytes`` unit, an open range
        ``bytes=N-`` ending at ``size`` (not ``size - 1``) with a ``Content-Length`` one byte more
        than the body (the connection then closes), and 416 for any range of fewer than two bytes
        (so for ``bytes=<size>-`` and for an empty layer). ``"rfc"``: RFC 7233 answers
        (``bytes <start>-<last>/<size>``, exact lengths), as a storage server would send.
    verify_tarsum
        Compute the tarsum of uploaded layers (gunzipping as needed) and reject a
        ``X-Docker-Checksum`` that differs with 400 ``Checksum mismatch``.
    host
        Loopback address to bind.
    seed
        Preload ``demo/busybox`` (:data:`SEED_REPOSITORY`): the three images of
        :func:`seed_content`, tagged ``1.0`` and ``latest``, with a search description.

    Attributes
    ----------
    index_url, registry_url : str
        ``http://127.0.0.1:<port>`` of each role (equal in standalone mode). ``url`` is the
        index's: the one URL a v1 client is given.
    registry_host : str
        ``127.0.0.1:<port>`` as listed in ``X-Docker-Endpoints``.
    requests : list[dict]
        One record per request received: ``role`` (``index``, ``registry`` or ``both``),
        ``method``, ``path`` (with query), ``headers`` (a dict; ``Authorization`` keeps only its
        scheme, e.g. ``"Basic <redacted>"``, and ``Cookie`` only its names), then, once the
        answer is sent, ``status`` (``None`` until then, or if the connection broke) and
        ``response_headers`` (a dict of strings, repeated headers joined by ``", "``; token
        signatures read ``signature=<redacted>`` and ``Set-Cookie`` keeps only cookie names and
        attributes).
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        tags_form: str = "dict",
        standalone: bool = False,
        standalone_header: str | None = None,
        registry_version: str = "0.9.1",
        token_prefix: bool | None = None,
        tokens_per_response: int = 1,
        token_reuse: bool = False,
        extra_endpoints: Sequence[str] = (),
        odd_whitespace: bool = True,
        push_redirect: int | None = None,
        accept_ranges: bool = True,
        drop_layer_after: int | None = None,
        drop_layer_times: int = 1,
        checksum_header: str = "X-Docker-Payload-Checksum",
        content_range: str = "python",
        verify_tarsum: bool = True,
        host: str = "127.0.0.1",
        seed: bool = False,
    ) -> None:
        if tags_form not in ("dict", "list", "list-empty"):
            raise ValueError("tags_form must be 'dict', 'list' or 'list-empty'")
        if checksum_header not in ("X-Docker-Payload-Checksum", "X-Docker-Checksum"):
            raise ValueError("checksum_header must be 'X-Docker-Payload-Checksum' or 'X-Docker-Checksum'")
        if content_range not in ("python", "rfc"):
            raise ValueError("content_range must be 'python' or 'rfc'")
        self.users = dict(users or {})
        self.tags_form = tags_form
        self.standalone = standalone
        self.standalone_header = standalone_header
        self.registry_version = registry_version
        self.token_prefix = standalone if token_prefix is None else token_prefix
        self.tokens_per_response = tokens_per_response
        self.token_reuse = token_reuse
        self.extra_endpoints = list(extra_endpoints)
        self.odd_whitespace = odd_whitespace
        self.push_redirect = push_redirect
        self.accept_ranges = accept_ranges
        self.drop_layer_after = drop_layer_after
        self.drop_layer_times = drop_layer_times
        self.checksum_header = checksum_header
        self.content_range = content_range
        self.verify_tarsum = verify_tarsum
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._images: dict[str, _StoredImage] = {}
        self._repos: dict[str, _Repo] = {}
        self._tokens: dict[str, _Token] = {}  # signature -> token
        self._sessions: dict[str, _Session] = {}  # cookie value -> session
        self._redirected: set[str] = set()
        self._drops_done = 0
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.index_url = self.registry_url = self.registry_host = ""
        if seed:
            images, tags = seed_content()
            self.preload(SEED_REPOSITORY, images, tags, description=SEED_DESCRIPTION)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "LocalV1Registry":
        """Bind the port(s) and serve in daemon threads. Returns ``self`` (already running: as is)."""
        if self._servers:
            return self
        roles = ["both"] if self.standalone else ["index", "registry"]
        for role in roles:
            server = _Server((self.host, 0), _Handler, app=self, role=role)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"v1sandbox-{role}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        urls = [f"http://{self.host}:{s.server_address[1]}" for s in self._servers]
        self.index_url, self.registry_url = urls[0], urls[-1]
        self.registry_host = self.registry_url.split("://", 1)[1]
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> "LocalV1Registry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:  # never lists passwords or tokens
        return (f"<{type(self).__name__} index={self.index_url or '-'} registry={self.registry_url or '-'} "
                f"standalone={self.standalone} users={len(self.users)}>")

    @property
    def url(self) -> str:
        """The index URL (``""`` before ``start()``): what a v1 client is given."""
        return self.index_url

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return bool(self._servers)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first ``(user, password)`` of ``users``, or ``None`` without users."""
        return next(iter(self.users.items()), None)

    def client(self, **kw: Any) -> Any:
        """A ``regexplore.Registry(self.url, api="v1")`` with :attr:`credentials` (``kw`` passes on).

        Imports the facade (and so pandas) only when called."""
        from .. import Registry

        kw.setdefault("auth", self.credentials)
        return Registry(self.url, api="v1", **kw)

    # -- preloading (no HTTP) ---------------------------------------------------------------------
    def add_image(self, image: V1Image) -> None:
        """Store one image (JSON, ancestry, layer, payload checksum) as a finished push would.

        Raises
        ------
        ValueError
            If the id is not 64 hex characters, the JSON's ``id`` differs, or the parent is unknown.
        """
        doc = json.loads(image.json)
        if not _IMAGE_ID_RE.match(image.id) or doc.get("id") != image.id:
            raise ValueError(f"bad image id {image.id!r}")
        with self._lock:
            parent = doc.get("parent")
            if parent and parent not in self._images:
                raise ValueError(f"parent {parent} of {image.id} is not stored yet (add base first)")
            ancestry = [image.id] + (self._images[parent].ancestry if parent else [])
            payload = PayloadChecksum(image.json)
            payload.update(image.layer)
            self._images[image.id] = _StoredImage(
                json=image.json, ancestry=ancestry, layer=image.layer,
                checksums=[payload.checksum], tarsum=_layer_tarsum(image.layer, image.json),
            )

    def preload(
        self,
        repository: str,
        images: Iterable[V1Image],
        tags: Mapping[str, str] | None = None,
        *,
        description: str | None = None,
        private: bool = False,
    ) -> None:
        """Store a chain of images (base first) and a repository with its tags.

        Parameters
        ----------
        repository
            ``"ns/repo"`` or a bare ``"repo"`` (stored as ``library/repo``).
        images
            Images in push order (each parent before its children).
        tags
            ``{tag: image id}``.
        description
            Shown by ``/v1/search`` (``null`` when ``None``, like the Python server).
        private
            The index then requires valid Basic auth for ``GET …/images``.
        """
        name = _normalize(repository)
        with self._lock:
            repo = self._repos.setdefault(name, _Repo())
            repo.description, repo.private = description, private
            for image in images:
                if image.id not in self._images:
                    self.add_image(image)
                stored = self._images[image.id]
                checksum = stored.tarsum or ""
                repo.images = [i for i in repo.images if i["id"] != image.id]
                repo.images.append({"id": image.id, "checksum": checksum})
            for tag, image_id in (tags or {}).items():
                if image_id not in self._images:
                    raise ValueError(f"tag {tag} points at unknown image {image_id}")
                repo.tags[tag] = image_id

    # -- introspection for tests ------------------------------------------------------------------
    def image_layer(self, image_id: str) -> bytes | None:
        """The stored layer bytes of an image (``None`` if absent)."""
        with self._lock:
            stored = self._images.get(image_id)
            return None if stored is None else stored.layer

    def image_complete(self, image_id: str) -> bool:
        """True when the image exists and its upload was confirmed by a checksum PUT."""
        with self._lock:
            stored = self._images.get(image_id)
            return stored is not None and not stored.uploading and stored.layer is not None

    def tags(self, repository: str) -> dict[str, str]:
        """A copy of a repository's tags (``{}`` if unknown)."""
        with self._lock:
            repo = self._repos.get(_normalize(repository))
            return dict(repo.tags) if repo else {}

    def index_images(self, repository: str) -> list[dict[str, str]]:
        """A copy of the index's image list for a repository."""
        with self._lock:
            repo = self._repos.get(_normalize(repository))
            return [dict(i) for i in repo.images] if repo else []

    # -- helpers used by the handler --------------------------------------------------------------
    def _ping_standalone_value(self) -> str:
        if self.standalone_header is not None:
            return self.standalone_header
        return str(bool(self.standalone))  # Python's str(bool): "True" / "False"

    def _endpoints_header(self) -> str:
        hosts = [self.registry_host, *self.extra_endpoints]
        if self.odd_whitespace:
            return " \t,  ".join(hosts) + " "
        return ",".join(hosts)

    def _issue_tokens(self, repository: str, access: str) -> list[str]:
        values = []
        with self._lock:
            for _ in range(max(1, self.tokens_per_response)):
                signature = secrets.token_hex(8).upper()
                self._tokens[signature] = _Token(repository, access)
                value = f'signature={signature},repository="{repository}",access={access}'
                values.append(("Token " + value) if self.token_prefix else value)
        return values


V1Server = LocalV1Registry  #: the name the test suite knew it by (``tests/support/v1server.py``)


def _normalize(repository: str) -> str:
    """``redis`` → ``library/redis``; strips slashes (toolkit.parse_repository_name)."""
    parts = repository.strip("/").split("/", 1)
    return f"library/{parts[0]}" if len(parts) < 2 else f"{parts[0]}/{parts[1]}"


def _layer_tarsum(layer: bytes, image_json: bytes) -> str | None:
    ts = TarSum(decompress=True)
    try:
        ts.update(layer)
        return ts.sum(image_json)
    except TarSumError:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, *, app: LocalV1Registry, role: str) -> None:
        self.app, self.role = app, role
        super().__init__(addr, handler)


class _Reply(Exception):
    """Raised inside a handler to send a response right away."""

    def __init__(self, status: int, body: Any = None, headers: Mapping[str, Any] | None = None,
                 *, raw: bool = False) -> None:
        self.status, self.body, self.headers, self.raw = status, body, dict(headers or {}), raw


def _error(message: str, status: int = 400, headers: Mapping[str, Any] | None = None) -> _Reply:
    """toolkit.api_error: ``{"error": message}``."""
    return _Reply(status, {"error": message}, headers)


_ROUTES: list[tuple[str, str, re.Pattern[str], str]] = [
    # (role, method, path regex, handler name); role "any" serves on both ports
    ("any", "GET", re.compile(r"^/v1/_ping$"), "ping"),
    ("any", "GET", re.compile(r"^/_ping$"), "ping"),
    ("index", "GET", re.compile(r"^/v1/search$"), "search"),
    ("index", "GET", re.compile(r"^/v1/users/?$"), "login"),
    ("index", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/images$"), "index_get_images"),
    ("index", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/images$"), "index_put_images"),
    ("registry", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "get_tag"),
    ("registry", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "put_tag"),
    ("registry", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "delete_tag"),
    ("registry", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags$"), "get_tags"),
    ("index", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/?$"), "index_put_repository"),
    ("index", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/$"), "index_delete_repository"),
    ("registry", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/$"), "delete_repository"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/json$"), "get_image_json"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/ancestry$"), "get_ancestry"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/layer$"), "get_layer"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/json$"), "put_image_json"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/layer$"), "put_layer"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/checksum$"), "put_checksum"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: _Server

    # silence the default stderr access log
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def app(self) -> LocalV1Registry:
        return self.server.app

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.url_path = split.path
        self.body_consumed = False
        self.extra_headers: dict[str, Any] = {}
        self.token_repository: str | None = None  # one handler object serves a whole connection
        role = self.server.role
        self.record: dict[str, Any] = {"role": role, "method": method, "path": self.path,
                                       "headers": _redacted(self.headers.items()), "status": None,
                                       "response_headers": {}}
        with self.app._lock:
            self.app.requests.append(self.record)
        try:
            if role == "both" and self.app.users:  # htpasswd in front of a standalone registry
                if self._basic_user() is None:
                    raise _Reply(401, {"error": "Requires authorization"},
                                 {"WWW-Authenticate": 'Basic realm="docker-registry"'})
            for route_role, route_method, pattern, name in _ROUTES:
                if route_method != method or (route_role != "any" and role not in (route_role, "both")):
                    continue
                match = pattern.match(self.url_path)
                if match:
                    getattr(self, "h_" + name)(**match.groupdict())
                    return
            raise _Reply(404, "<h1>Not Found</h1>", {"Content-Type": "text/html"}, raw=True)
        except _Reply as reply:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _body(self) -> bytes:
        """Read the whole request body (Content-Length or chunked)."""
        self.body_consumed = True
        return b"".join(self._body_chunks())

    def _body_chunks(self) -> Iterable[bytes]:
        self.body_consumed = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise ConnectionError("client closed during chunked body")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 65536))
                    if not data:
                        raise ConnectionError("client closed during chunked body")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    raise ConnectionError("client closed during body")
                remaining -= len(data)
                yield data

    def _base_headers(self) -> dict[str, Any]:
        # toolkit.response + app.after_request
        return {
            "Cache-Control": "no-cache",
            "Expires": "-1",
            "Content-Type": "application/json",
            "X-Docker-Registry-Version": self.app.registry_version,
            "X-Docker-Registry-Config": "dev",
        }

    def _send(self, reply: _Reply) -> None:
        headers = self._base_headers()
        headers.update(self.extra_headers)
        headers.update(reply.headers)
        if headers.get("Cache-Control") == "no-cache":
            headers["Pragma"] = "no-cache"
        if reply.status in (204, 304):
            payload = b""
        elif reply.raw:
            payload = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
        else:
            body = True if reply.body is None else reply.body
            payload = json.dumps(body, sort_keys=True).encode()
        if not self.body_consumed and self.command in ("PUT", "POST"):
            headers["Connection"] = "close"  # unread request body: do not reuse the connection
            self.close_connection = True
        logged = dict(headers)
        if reply.status not in (204, 304):
            logged["Content-Length"] = len(payload)
        self._log_response(reply.status, logged)
        self.send_response(reply.status)
        cookies = headers.pop("Set-Cookie", None)
        for key, value in headers.items():
            for item in value if isinstance(value, list) else [value]:
                self.send_header(key, str(item))
        if cookies:
            self.send_header("Set-Cookie", cookies)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    def _log_response(self, status: int, headers: Mapping[str, Any]) -> None:
        with self.app._lock:
            self.record["status"] = status
            self.record["response_headers"] = _redacted_response(headers)

    # -- auth -------------------------------------------------------------------------------------
    def _basic_user(self) -> str | None:
        """The user of a valid Basic header; ``None`` if absent. Raises 401 if present but wrong."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", None  # type: ignore[assignment]
        expected = self.app.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password or ""):
            raise self._index_unauthorized()
        return user

    def _index_unauthorized(self) -> _Reply:
        return _error("Requires authorization", 401,
                      {"WWW-Authenticate": 'Basic realm="auth required",Token'})

    def _want_token(self) -> bool:
        return self.headers.get("X-Docker-Token", "").lower() == "true"

    def _index_headers(self, repository: str, access: str) -> dict[str, Any]:
        headers: dict[str, Any] = {"X-Docker-Endpoints": self.app._endpoints_header()}
        if self._want_token():
            tokens = self.app._issue_tokens(repository, access)
            headers["X-Docker-Token"] = tokens
            headers["WWW-Authenticate"] = tokens[0] if self.app.token_prefix else "Token " + tokens[0]
        return headers

    def _cookie_session(self) -> _Session | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:
            return None
        morsel = cookie.get("session")
        if morsel is None:
            return None
        with self.app._lock:
            return self.app._sessions.get(morsel.value)

    def _require_token(self, repository: str | None = None) -> None:
        """toolkit.requires_auth for the registry role: session cookie, else a fresh index token.

        Raises
        ------
        _Reply
            401 ``Requires authorization`` with ``WWW-Authenticate: Token``.
        """
        if self.app.standalone:
            return
        method = self.command
        session = self._cookie_session()
        if session is not None and _access_allows(session.access, method) and (
            repository is None or session.repository == repository
        ):
            return
        header = self.headers.get("Authorization", "")
        if header.split(" ")[0].lower() == "token":
            pairs = _AUTH_RE.findall(header)
            fields = dict(pairs)  # the Python server keeps the last value of each key
            signatures = [value for key, value in pairs if key == "signature"]
            with self.app._lock:
                for signature in signatures:
                    token = self.app._tokens.get(signature)
                    if token is None or (token.used and not self.app.token_reuse):
                        continue
                    if repository is not None and token.repository != repository:
                        continue
                    if not _access_allows(token.access, method):
                        continue
                    if fields.get("repository") and repository is not None and fields["repository"] != repository:
                        continue
                    token.used = True  # "Docker Hub will invalidate the token"
                    value = secrets.token_urlsafe(24)
                    self.app._sessions[value] = _Session(token.repository, token.access)
                    self.extra_headers["Set-Cookie"] = f"session={value}; HttpOnly; Path=/"
                    self.token_repository = token.repository
                    return
        raise _error("Requires authorization", 401, {"WWW-Authenticate": "Token"})

    def _authorized_repository(self) -> str | None:
        """The repository the request's token or session is for (``None`` if standalone)."""
        session = self._cookie_session()
        if session is not None:
            return session.repository
        return self.token_repository

    # -- both roles -------------------------------------------------------------------------------
    def h_ping(self) -> None:
        # app.py ping(): body {} ; X-Docker-Registry-Standalone: str(cfg.standalone is not False)
        raise _Reply(200, {}, {"X-Docker-Registry-Standalone": self.app._ping_standalone_value()})

    # -- index role -------------------------------------------------------------------------------
    def h_search(self) -> None:
        term = self.query.get("q", [""])[0]
        with self.app._lock:
            results = [
                {"name": name, "description": repo.description}
                for name, repo in sorted(self.app._repos.items())
                if term.lower() in name.lower() and not repo.private
            ]
        raise _Reply(200, {"query": term, "num_results": len(results), "results": results})

    def h_login(self) -> None:
        # hub_registry_spec "Login": valid 200, invalid 401
        if self._basic_user() is None:
            raise self._index_unauthorized()
        raise _Reply(200, "OK")

    def h_index_get_images(self, repo: str) -> None:
        name = _normalize(repo)
        user = self._basic_user()
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or (stored.private and user is None):
                if stored is not None:
                    raise self._index_unauthorized()
                raise _error("images not found", 404)
            body = json.dumps(stored.images).encode()
        raise _Reply(200, body, self._index_headers(name, "read"), raw=True)

    def h_index_put_repository(self, repo: str) -> None:
        name = _normalize(repo)
        body = self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        if self.app.push_redirect and "redirected" not in self.query:
            with self.app._lock:
                first = name not in self.app._redirected
                self.app._redirected.add(name)
            if first:
                location = f"{self.app.index_url}/v1/repositories/{name}/?redirected=1"
                raise _Reply(self.app.push_redirect, "", {"Location": location})
        images = self._image_list(body)
        with self.app._lock:
            stored = self.app._repos.setdefault(name, _Repo())
            _merge_index_images(stored, images)
        raise _Reply(200, "", self._index_headers(name, "write"))

    def h_index_put_images(self, repo: str) -> None:
        name = _normalize(repo)
        body = self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        images = self._image_list(body)
        with self.app._lock:
            stored = self.app._repos.setdefault(name, _Repo())
            _merge_index_images(stored, images, update_checksums=True)
        raise _Reply(204, "", self._index_headers(name, "write"))

    def h_index_delete_repository(self, repo: str) -> None:
        name = _normalize(repo)
        self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        with self.app._lock:
            if name not in self.app._repos:
                raise _error("Repository not found", 404)
        raise _Reply(202, "", self._index_headers(name, "delete"))

    def _image_list(self, body: bytes) -> list[dict[str, Any]]:
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            raise _error("Error Decoding JSON", 400) from None
        if not isinstance(data, list) or not all(isinstance(i, dict) and "id" in i for i in data):
            raise _error("Invalid data")
        return data

    # -- registry role: tags ----------------------------------------------------------------------
    def h_get_tags(self, repo: str) -> None:
        name = _normalize(repo)
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or not stored.tags and not stored.images:
                raise _error("Repository not found", 404)
            tags = dict(stored.tags)
        if self.app.tags_form == "dict":
            raise _Reply(200, tags)
        layer = (lambda i: "") if self.app.tags_form == "list-empty" else (lambda i: i[:8])
        raise _Reply(200, [{"layer": layer(i), "name": t} for t, i in tags.items()])

    def h_get_tag(self, repo: str, tag: str) -> None:
        name = _normalize(repo)
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or tag not in stored.tags:
                raise _error("Tag not found", 404)
            raise _Reply(200, stored.tags[tag])

    def h_put_tag(self, repo: str, tag: str) -> None:
        name = _normalize(repo)
        body = self._body()
        self._require_token(name)
        if not _TAG_RE.match(tag):
            raise _error(f"Invalid tag name (must match {_TAG_RE.pattern})")
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            data = None
        if not data or not isinstance(data, str):
            raise _error("Invalid data")
        with self.app._lock:
            if data not in self.app._images:
                raise _error("Image not found", 404)
            self.app._repos.setdefault(name, _Repo()).tags[tag] = data
        raise _Reply(200, True)

    def h_delete_tag(self, repo: str, tag: str) -> None:
        name = _normalize(repo)
        self._body()
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or tag not in stored.tags:
                raise _error(f"Tag not found: {tag}", 404)
            del stored.tags[tag]
        raise _Reply(200, True)

    def h_delete_repository(self, repo: str) -> None:
        name = _normalize(repo)
        self._body()
        self._require_token(name)
        with self.app._lock:
            if self.app._repos.pop(name, None) is None:
                raise _error("Repository not found", 404)
        raise _Reply(200, True)

    # -- registry role: images --------------------------------------------------------------------
    def _completed_image(self, image: str) -> _StoredImage:
        with self.app._lock:
            stored = self.app._images.get(image)
        if stored is None:
            raise _error("Image not found", 404)
        if stored.uploading:  # images.require_completion
            raise _error("Image is being uploaded, retry later")
        return stored

    def _cache_headers(self) -> dict[str, Any]:
        # images.set_cache_headers (these responses carry no Pragma)
        expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + _CACHE_TTL))
        headers = {"Cache-Control": f"public, max-age={_CACHE_TTL}", "Expires": expires,
                   "Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT"}
        if "If-Modified-Since" in self.headers:
            raise _Reply(304, None, headers)
        return headers

    def h_get_image_json(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        headers = self._cache_headers()
        if stored.layer is not None:
            headers["X-Docker-Size"] = str(len(stored.layer))
        if stored.checksums:
            headers[self.app.checksum_header] = stored.checksums
        raise _Reply(200, stored.json, headers, raw=True)

    def h_get_ancestry(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        raise _Reply(200, stored.ancestry, self._cache_headers())

    def h_get_layer(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        headers = self._cache_headers()
        headers["Content-Type"] = "application/octet-stream"
        if stored.layer is None:
            raise _error("Image not found", 404)
        layer = stored.layer
        size = len(layer)
        byte_range = None
        if self.app.accept_ranges:
            headers["Accept-Ranges"] = "bytes"
            byte_range = _parse_bytes_range(self.headers.get("Range"))
        if byte_range is None:
            if size == 0:  # images._get_image_layer: an empty layer is 416 even without Range
                raise _Reply(416, b"", headers, raw=True)
            self._send_layer(200, headers, layer)
            return
        if self.app.content_range == "rfc":
            self._send_rfc_range(headers, layer, byte_range)
            return
        start, end = byte_range
        if end == -1 and size:
            end = size  # images._get_image_layer: (start, layer_size), one past the last byte
        if start < 0 or end < 1 or end - start + 1 < 2:  # images._valid_bytes_range
            raise _Reply(416, b"", headers, raw=True)
        headers["Content-Range"] = f"{start}-{end}/{size}"  # no "bytes " unit
        # Content-Length is the range's length; the storage reads what the file has
        self._send_layer(206, headers, layer[start:end + 1], length=end - start + 1)

    def _send_rfc_range(self, headers: dict[str, Any], layer: bytes, byte_range: tuple[int, int]) -> None:
        """An RFC 7233 answer to ``bytes=a-[b]``: 206 with ``bytes a-last/size``, or 416 with
        ``bytes */size`` when ``a`` is at or past the end."""
        size = len(layer)
        start, end = byte_range
        if start >= size or (end != -1 and end < start):
            raise _Reply(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, raw=True)
        last = size - 1 if end == -1 else min(end, size - 1)
        headers["Content-Range"] = f"bytes {start}-{last}/{size}"
        self._send_layer(206, headers, layer[start:last + 1])

    def _send_layer(self, status: int, headers: dict[str, Any], body: bytes,
                    length: int | None = None) -> None:
        """Send a layer body; ``length`` is the ``Content-Length`` to announce (default: the body's).
        When the body is shorter the connection is closed after it (as a WSGI server does)."""
        length = len(body) if length is None else length
        all_headers = self._base_headers()
        all_headers.update(self.extra_headers)
        all_headers.update(headers)
        cut = None
        with self.app._lock:
            if self.app.drop_layer_after is not None and self.app._drops_done < self.app.drop_layer_times:
                self.app._drops_done += 1
                cut = self.app.drop_layer_after
        self._log_response(status, {**all_headers, "Content-Length": length})
        self.send_response(status)
        for key, value in all_headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(length))
        if length > len(body):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut is not None and cut < len(body):
            body = body[:cut]
        elif length <= len(body):
            self.wfile.write(body)
            return
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def h_put_image_json(self, image: str) -> None:
        body = self._body()
        self._require_token()
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            data = None
        if not data or not isinstance(data, dict):
            raise _error("Invalid JSON")
        if "id" not in data:
            raise _error("Missing key `id' in JSON")
        if image != data["id"]:
            raise _error("JSON data contains invalid id")
        repository = self._authorized_repository()
        with self.app._lock:
            if repository is not None and not self.app.standalone:  # images.check_images_list
                listed = [i["id"] for i in self.app._repos.get(repository, _Repo()).images]
                if image not in listed:
                    raise _error("This image does not belong to the repository")
            parent = data.get("parent")
            if parent and parent not in self.app._images:
                raise _error("Image depends on a non existing parent")
            existing = self.app._images.get(image)
            if existing is not None and not existing.uploading:
                raise _error("Image already exists", 409)
            ancestry = [image] + (self.app._images[parent].ancestry if parent else [])
            self.app._images[image] = _StoredImage(json=body, ancestry=ancestry, uploading=True)
        raise _Reply(200, True)

    def h_put_layer(self, image: str) -> None:
        self._require_token()
        with self.app._lock:
            stored = self.app._images.get(image)
        if stored is None:
            raise _error("Image not found", 404)
        if stored.layer is not None and not stored.uploading:
            raise _error("Image already exists", 409)
        payload = PayloadChecksum(stored.json)
        summer: TarSum | None = TarSum(decompress=True) if self.app.verify_tarsum else None
        parts = []
        try:
            for chunk in self._body_chunks():
                parts.append(chunk)
                payload.update(chunk)
                if summer is not None:
                    try:
                        summer.update(chunk)
                    except TarSumError:
                        summer = None  # not a tar: the Python server just disabled TarSum
        except (ConnectionError, ValueError):
            self.close_connection = True
            return  # client went away mid-upload: nothing stored, mark stays
        tarsum_value = None
        if summer is not None:
            try:
                tarsum_value = summer.sum(stored.json)
            except TarSumError:
                tarsum_value = None
        with self.app._lock:
            stored.layer = b"".join(parts)
            stored.checksums = [payload.checksum]
            stored.tarsum = tarsum_value
            stored.uploading = True
        raise _Reply(200, True)

    def h_put_checksum(self, image: str) -> None:
        self._body()
        self._require_token()
        checksum = self.headers.get("X-Docker-Checksum-Payload")
        if checksum is None:
            raise _error("X-Docker-Checksum-Payload not set.  If you are using the Docker "
                         "daemon, you should upgrade to version 0.10 or later", 412)
        if not checksum:
            raise _error("Missing Image's checksum")
        with self.app._lock:
            stored = self.app._images.get(image)
            if stored is None:
                raise _error("Image not found", 404)
            if not stored.uploading or stored.layer is None:
                raise _error("Cannot set this image checksum", 409)
            if checksum not in stored.checksums:
                raise _error("Checksum mismatch")
            tarsum_header = self.headers.get("X-Docker-Checksum")
            if tarsum_header and stored.tarsum is not None and tarsum_header != stored.tarsum:
                raise _error("Checksum mismatch")
            stored.uploading = False
        raise _Reply(200, True)


def _redacted(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Request headers for the ``requests`` record, without credential values."""
    headers = {}
    for key, value in items:
        if key.lower() == "authorization":
            value = value.split(" ", 1)[0] + " <redacted>"
        elif key.lower() == "cookie":
            value = "; ".join(part.split("=", 1)[0].strip() + "=<redacted>" for part in value.split(";"))
        headers[key] = value
    return headers


_SIGNATURE_RE = re.compile(r"(signature=)[^,\s]+")


def _redacted_response(headers: Mapping[str, Any]) -> dict[str, str]:
    """Response headers for the ``requests`` record: token signatures and cookie values hidden."""
    out = {}
    for key, value in headers.items():
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        lower = key.lower()
        if lower in ("x-docker-token", "www-authenticate"):
            text = _SIGNATURE_RE.sub(r"\1<redacted>", text)
        elif lower == "set-cookie":
            name, _, rest = text.partition("=")
            attributes = rest.partition(";")[2]
            text = f"{name}=<redacted>" + (f";{attributes}" if attributes else "")
        out[key] = text
    return out


def _access_allows(access: str, method: str) -> bool:
    """toolkit.check_token: write ⇒ POST/PUT, read ⇒ GET, delete ⇒ DELETE."""
    if access == "write":
        return method in ("POST", "PUT")
    if access == "read":
        return method in ("GET", "HEAD")
    if access == "delete":
        return method == "DELETE"
    return False


def _merge_index_images(repo: _Repo, images: list[dict[str, Any]], *, update_checksums: bool = False) -> None:
    """index.update_index_images: keep ``id`` and ``checksum``; a known checksum is not dropped."""
    by_id = {i["id"]: i for i in repo.images}
    for item in images:
        entry = by_id.setdefault(item["id"], {"id": item["id"]})
        if "checksum" in item and (update_checksums or "checksum" not in entry):
            entry["checksum"] = item["checksum"]
    repo.images = list(by_id.values())


def _parse_bytes_range(header: str | None) -> tuple[int, int] | None:
    """images._parse_bytes_range: ``bytes=a-b`` or ``bytes=a-``; anything else is ignored."""
    if not header or not header.startswith("bytes="):
        return None
    parts = header[6:].split("-")
    if len(parts) != 2:
        return None
    try:
        start = int(parts[0])
        end = int(parts[1]) if parts[1] != "" else -1
    except ValueError:
        return None
    return start, end
