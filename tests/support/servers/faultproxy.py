"""A reverse proxy in front of the real registry, with faults you can inject; and an S3-like store.

Use it to prove how a client behaves when the network or a registry misbehaves, while every
answer that is not a fault still comes from the real registry::

    with LocalRegistry() as reg, FaultProxy(reg.url) as proxy:
        proxy.fail(429, times=1, headers={"Retry-After": "1"})   # next request: 429
        proxy.drop(after_bytes=10, path=r"/blobs/")               # cut a blob body after 10 bytes
        client = Transport(proxy.url)                               # talk to proxy.url, not reg.url
        ...
        proxy.requests          # what reached the proxy (Authorization redacted to its scheme; time.monotonic())
        proxy.hits("/blobs/")   # how many of them matched a path regex

Faults (each: ``times`` = how many matching requests it hits, ``None`` = all; ``path`` = regex
searched in the request path; ``method``; they are used in the order added, one per request):

- :meth:`fail` — answer ``status`` (e.g. 429 + ``Retry-After``, 500, 502, 503) without forwarding;
  the body defaults to the shape a real server sends for that status (Docker Hub's 429 JSON,
  nginx's 502/503 HTML pages).
- :meth:`drop` — forward, then send the headers and only ``after_bytes`` bytes of the body and close
  the connection (``after_bytes=None``: close before any answer).
- :meth:`flip_byte` — forward, then flip one bit of the body byte at ``offset``.
- :meth:`ignore_range` — forward without the ``Range`` header, so the client gets ``200`` and the
  whole body where it asked for a part.
- :meth:`expire_token` — corrupt the Bearer token of the request before forwarding, so the real
  registry answers its genuine ``401`` with ``error="invalid_token"`` (a token that died
  mid-session).
- :meth:`add_headers` — add response headers (e.g. Docker Hub's ``ratelimit-*``), or with
  ``replace=True`` put them in place of the upstream's (e.g. another ``Docker-Content-Digest``).
- :meth:`redirect_blobs` — answer blob GETs (or any GET matching ``path``, e.g. v1 layers) with
  ``307`` to an :class:`S3LikeStore` holding the registry's bytes under a presigned-looking URL
  (the upstream is asked without ``Range``; the store serves the range); the store rejects any
  request that carries ``Authorization`` with S3's real ``400 InvalidArgument`` "Only one auth
  mechanism allowed" error, and can hand out URLs that have expired (:meth:`S3LikeStore.expire`,
  S3's ``403 AccessDenied`` "Request has expired") or cut bodies (:meth:`S3LikeStore.drop`).

The proxy also works as a forward HTTP proxy (absolute-URI requests and ``CONNECT``), so it can
stand in for ``HTTP_PROXY`` / ``HTTPS_PROXY``; those requests are recorded with ``proxied=True``.
"""

from __future__ import annotations

import http.client
import re
import secrets
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from .loopback import LoopbackServer

__all__ = ["FaultProxy", "S3LikeStore", "Fault", "DOCKER_HUB_429_BODY", "S3_ONE_AUTH_MESSAGE"]

# Docker Hub's 429 body (docs.docker.com "Docker Hub rate limit", as the registry sends it).
DOCKER_HUB_429_BODY = (
    b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. '
    b'You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}'
)
S3_ONE_AUTH_MESSAGE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
    "string parameter or the Authorization header should be specified"
)
_NGINX_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate"}


def _default_body(status: int) -> tuple[bytes, str]:
    if status == 429:
        return DOCKER_HUB_429_BODY, "application/json"
    reason = http.client.responses.get(status, "Error")
    return _NGINX_PAGE.format(code=status, reason=reason).encode(), "text/html"


def _redact_headers(headers: Any) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        if k.lower() in ("authorization", "proxy-authorization"):
            v = v.split(" ", 1)[0] + " REDACTED"
        out[k] = v
    return out


@dataclass
class Fault:
    """One injected fault (see the module docstring); built by the ``FaultProxy`` methods."""

    kind: str
    times: int | None = 1
    path: str | None = None
    method: str | None = None
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    after_bytes: int | None = 0
    offset: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        return not self.path or re.search(self.path, path) is not None


class S3LikeStore(LoopbackServer):
    """A second server standing in for object storage behind a registry's blob redirect.

    ``put(data)`` stores bytes and returns a presigned-looking URL (``X-Amz-Algorithm``,
    ``X-Amz-Signature`` query). A GET carrying ``Authorization`` gets S3's real answer: ``400``
    ``InvalidArgument`` "Only one auth mechanism allowed; ...". Otherwise it serves the bytes,
    honouring ``Range: bytes=a-[b]`` with ``206``. ``requests`` records every request
    (Authorization redacted to its scheme, ``status`` answered); ``signature`` is the secret in
    the URLs.

    Faults: :meth:`expire` makes URLs handed out later already expired (a CDN answering with a
    cached redirect whose signature has run out); :meth:`drop` cuts bodies; ``max_range`` (bytes,
    None: no limit) makes a 206 cover at most that much of what was asked, as RFC 9110 allows.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self._issued = 0
        self._expire_from: int | None = None
        self._expire_until: int | None = None
        self._drops: list[int] = []
        self.max_range: int | None = None
        self.signature = secrets.token_hex(32)
        self._lock = threading.Lock()

    def handler(self) -> type:
        store = self

        class Handler(_StoreHandler):
            owner = store

        return Handler

    def put(self, data: bytes) -> str:
        key = secrets.token_hex(8)
        with self._lock:
            self.objects[key] = data
            self._issued += 1
            n = self._issued
            if self._expire_from is not None and n >= self._expire_from and (
                    self._expire_until is None or n < self._expire_until):
                self.expired.add(key)
        return (f"{self.url}/registry-v2/blobs/{key}/data?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Expires=1200&X-Amz-Signature={self.signature}")

    def expire(self, *, after: int = 0, times: int | None = 1) -> None:
        """URLs that :meth:`put` hands out from now on, after the next ``after`` good ones, are
        born expired, ``times`` of them (None: all): GETs get ``403 AccessDenied``."""
        with self._lock:
            self._expire_from = self._issued + after + 1
            self._expire_until = None if times is None else self._expire_from + times

    def drop(self, after_bytes: int, *, times: int = 1) -> None:
        """The next ``times`` object GETs send ``after_bytes`` bytes of the body, then close."""
        with self._lock:
            self._drops.extend([after_bytes] * times)


class _StoreHandler(BaseHTTPRequestHandler):
    owner: S3LikeStore
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        store = self.owner
        parts = urlsplit(self.path)
        self.record = {"method": "GET", "path": parts.path, "authorization": "Authorization" in self.headers,
                       "headers": _redact_headers(self.headers), "status": None}
        with store._lock:
            store.requests.append(self.record)
        if "Authorization" in self.headers:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code>'
                f"<Message>{S3_ONE_AUTH_MESSAGE}</Message><ArgumentName>Authorization</ArgumentName>"
                f"<ArgumentValue>{self.headers['Authorization'].split(' ', 1)[0]} …</ArgumentValue>"
                f"<RequestId>{secrets.token_hex(8).upper()}</RequestId><HostId>{secrets.token_urlsafe(40)}"
                "</HostId></Error>"
            ).encode()
            self._send(400, body, {"Content-Type": "application/xml"})
            return
        m = re.match(r"^/registry-v2/blobs/([0-9a-f]+)/data$", parts.path)
        data = store.objects.get(m.group(1)) if m else None
        if m and m.group(1) in store.expired:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                "<Message>Request has expired</Message><X-Amz-Expires>1200</X-Amz-Expires>"
                "<Expires>2014-10-16T19:59:20Z</Expires><ServerTime>2014-10-16T20:12:03Z</ServerTime>"
                f"<RequestId>{secrets.token_hex(8).upper()}</RequestId><HostId>{secrets.token_urlsafe(40)}"
                "</HostId></Error>"
            ).encode()
            self._send(403, body, {"Content-Type": "application/xml"})
            return
        if data is None:
            self._send(404, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                            b"<Message>The specified key does not exist.</Message></Error>",
                       {"Content-Type": "application/xml"})
            return
        rng = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(data) - 1
            if store.max_range is not None:
                end = min(end, start + store.max_range - 1)
            if start >= len(data):  # S3's InvalidRange
                self._send(416, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code>'
                                b"<Message>The requested range is not satisfiable</Message></Error>",
                           {"Content-Type": "application/xml", "Content-Range": f"bytes */{len(data)}"})
                return
            part = data[start:end + 1]
            self._send(206, part, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                                   "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"})
            return
        self._send(200, data, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        store = self.owner
        cut = None
        with store._lock:
            self.record["status"] = status
            if status in (200, 206) and store._drops:
                cut = store._drops.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut is None or cut >= len(body):
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class FaultProxy(LoopbackServer):
    """Reverse proxy on ``127.0.0.1:<free port>`` (or ``bind``) to ``upstream`` with injectable faults.

    ``upstream``: the registry's base URL (http or https); ``ca_file``: CA to trust for an https
    upstream. ``requests``: one dict per request received (``method``, ``path``, ``headers`` with
    Authorization redacted, ``authorization`` bool, ``status`` answered, ``fault`` kind or None,
    ``proxied`` for forward-proxy use).
    """

    def __init__(self, upstream: str, *, ca_file: str | None = None, bind: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.bind = bind
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.store: S3LikeStore | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.url if self._httpd else 'stopped'} -> {self.upstream}>"

    # ------------------------------------------------------------------ lifecycle
    def handler(self) -> type:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        return Handler

    def stopped(self) -> None:
        if self.store is not None:
            self.store.stop()

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    # ------------------------------------------------------------------ faults
    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def fail(self, status: int, *, times: int | None = 1, path: str | None = None, method: str | None = None,
             headers: dict[str, str] | None = None, body: bytes | None = None) -> Fault:
        """Answer ``status`` without forwarding (``Retry-After`` etc. via ``headers``)."""
        return self._add(Fault("fail", times, path, method, status=status, headers=dict(headers or {}), body=body))

    def drop(self, after_bytes: int | None = 0, *, times: int | None = 1, path: str | None = None,
             method: str | None = None) -> Fault:
        """Cut the connection after ``after_bytes`` bytes of the body (None: before any answer)."""
        return self._add(Fault("drop", times, path, method, after_bytes=after_bytes))

    def flip_byte(self, offset: int = 0, *, times: int | None = 1, path: str | None = None) -> Fault:
        """Flip the lowest bit of body byte ``offset``."""
        return self._add(Fault("flip", times, path, "GET", offset=offset))

    def ignore_range(self, *, times: int | None = 1, path: str | None = None) -> Fault:
        """Forward without ``Range``: the client gets 200 and the full body."""
        return self._add(Fault("ignore_range", times, path, "GET"))

    def expire_token(self, *, times: int | None = 1, path: str | None = None) -> Fault:
        """Corrupt the Bearer token so the real registry answers 401 ``invalid_token``."""
        return self._add(Fault("expire_token", times, path))

    def add_headers(self, headers: dict[str, Any], *, times: int | None = None, path: str | None = None,
                    method: str | None = None, replace: bool = False) -> Fault:
        """Add response headers to matching (forwarded) answers; with ``replace`` the upstream's
        headers of those names are dropped first (and a value of None only drops them)."""
        return self._add(Fault("replace_headers" if replace else "headers", times, path, method,
                               headers=dict(headers)))

    def redirect_blobs(self, *, times: int | None = None, status: int = 307,
                       path: str = r"/v2/.+/blobs/sha256:") -> S3LikeStore:
        """Serve GETs matching ``path`` (blob GETs by default; ``r"/v1/images/.+/layer$"`` for v1
        layers) from an :class:`S3LikeStore` through a ``status`` redirect; returns the store."""
        if self.store is None:
            self.store = S3LikeStore().start()
        self._add(Fault("redirect", times, path, "GET", status=status))
        return self.store

    def hits(self, path: str | None = None, method: str | None = None) -> int:
        """How many recorded requests match the ``path`` regex and ``method``."""
        with self._lock:
            return sum(1 for r in self.requests
                       if (path is None or re.search(path, r["path"])) and (method is None or r["method"] == method))

    def _take(self, method: str, path: str, kinds: set[str]) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.kind in kinds and f.matches(method, path):
                    f.hits += 1
                    return f
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def _record(self, path: str, status: int | str, fault: Fault | None, proxied: bool) -> None:
        with self.owner._lock:
            self.owner.requests.append({
                "method": self.command, "path": path, "status": status, "time": time.monotonic(),
                "fault": fault.kind if fault else None, "proxied": proxied,
                "authorization": "Authorization" in self.headers, "headers": _redact_headers(self.headers),
            })

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, *, cut: int | None = None) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self) -> None:
        proxy = self.owner
        proxied = self.path.startswith(("http://", "https://"))
        target = self.path if proxied else proxy.upstream + self.path
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = self._read_body()
        method = self.command
        faults: set[str] = set() if proxied else {"fail", "drop", "redirect"}
        fault = proxy._take(method, parts.path, faults) if faults else None

        if fault and fault.kind == "fail":
            payload, ctype = (fault.body, "application/json") if fault.body is not None else _default_body(fault.status)
            headers = [("Content-Type", ctype), *fault.headers.items()]
            self._record(parts.path, fault.status, fault, proxied)
            self._send(fault.status, headers, payload)
            return
        if fault and fault.kind == "drop" and fault.after_bytes is None:
            self._record(parts.path, "dropped", fault, proxied)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return

        send_headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        pre = None if proxied else proxy._take(method, parts.path, {"expire_token", "ignore_range"})
        if pre and pre.kind == "expire_token" and send_headers.get("Authorization", "").startswith("Bearer "):
            send_headers["Authorization"] += "x"
        if (pre and pre.kind == "ignore_range") or (fault and fault.kind == "redirect"):
            # a redirect stores the whole object: the store answers the Range itself
            send_headers = {k: v for k, v in send_headers.items() if k.lower() != "range"}
        try:
            status, rheaders, rbody = self._upstream(method, parts, path, send_headers, body)
        except OSError as exc:
            self._record(parts.path, "upstream-error", fault, proxied)
            self._send(502, [("Content-Type", "text/plain")], f"upstream: {type(exc).__name__}".encode())
            return

        if fault and fault.kind == "redirect" and status == 200:
            assert proxy.store is not None
            location = proxy.store.put(rbody)
            self._record(parts.path, fault.status, fault, proxied)
            self._send(fault.status, [("Location", location), ("Content-Type", "text/html; charset=utf-8")],
                       f'<a href="{location}">Temporary Redirect</a>.\n\n'.encode())
            return
        post = None
        if not proxied:  # flips hit a body worth flipping, not a 401 challenge
            kinds = {"headers", "replace_headers"}
            post = proxy._take(method, parts.path, kinds | {"flip"} if status in (200, 206) else kinds)
        if post and post.kind == "flip" and len(rbody) > post.offset:
            b = bytearray(rbody)
            b[post.offset] ^= 0x01
            rbody = bytes(b)
        elif post and post.kind == "headers":
            rheaders = [*rheaders, *post.headers.items()]
        elif post and post.kind == "replace_headers":
            names = {k.lower() for k in post.headers}
            rheaders = [(k, v) for k, v in rheaders if k.lower() not in names] + [
                (k, v) for k, v in post.headers.items() if v is not None]
        used = fault or pre or post
        self._record(parts.path, status, used, proxied)
        cut = fault.after_bytes if fault and fault.kind == "drop" else None
        self._send(status, rheaders, rbody, cut=cut)

    def _upstream(self, method: str, parts: Any, path: str, headers: dict[str, str],
                  body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.owner.ca_file)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.netloc, timeout=30, context=ctx)
        else:
            conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        try:
            conn.request(method, path or "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def do_CONNECT(self) -> None:
        """Forward-proxy tunnel (for https targets behind ``HTTPS_PROXY``)."""
        host, _, port = self.path.rpartition(":")
        self._record(self.path, 200, None, True)
        try:
            upstream = socket.create_connection((host, int(port)), timeout=30)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    break
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True
