"""The HTTP plumbing of the v1 server: request bodies (Content-Length or chunked), replies as JSON the way
the Python ``docker-registry`` sent them, and the request log with credentials redacted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .store import V1Store

__all__ = ["Reply", "V1HTTPServer", "WireHandler", "api_error", "redacted_request"]


class V1HTTPServer(ThreadingHTTPServer):
    """One listening socket of ``app``, serving one ``role``: ``index``, ``registry`` or ``both``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, *, app: V1Store, role: str) -> None:
        self.app, self.role = app, role
        super().__init__(addr, handler)


class Reply(Exception):
    """Raised inside a handler to send a response right away."""

    def __init__(self, status: int, body: Any = None, headers: Mapping[str, Any] | None = None,
                 *, raw: bool = False) -> None:
        self.status, self.body, self.headers, self.raw = status, body, dict(headers or {}), raw


def api_error(message: str, status: int = 400, headers: Mapping[str, Any] | None = None) -> Reply:
    """toolkit.api_error: ``{"error": message}``."""
    return Reply(status, {"error": message}, headers)


class WireHandler(BaseHTTPRequestHandler):
    """Reading requests and sending replies; :class:`~.handler.V1Handler` adds the routes."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: V1HTTPServer
    record: dict[str, Any]  # this request's entry in ``app.requests`` (set when it is dispatched)
    extra_headers: dict[str, Any]  # headers every reply to this request carries (a session cookie)
    body_consumed: bool  # False: an unread request body, so the connection is not reused

    # silence the default stderr access log
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def app(self) -> V1Store:
        return self.server.app

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

    def _send(self, reply: Reply) -> None:
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


def redacted_request(items: Iterable[tuple[str, str]]) -> dict[str, str]:
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
