"""A fake adapter: test code that talks to registries through regexplore without a registry or a socket.

:class:`FakeAdapter` is a ``requests`` transport adapter (``Session.mount``, like httpx's
``MockTransport``) that answers every request from a function or from a list of canned replies.
Mount it on a :class:`~regexplore.http.transport.Transport` (or ``Registry.transport``) and everything
regexplore does above the socket runs for real: credentials, redirects, challenges and token requests,
retries, the trace, error mapping::

    from regexplore.http.testing import FakeAdapter, Reply
    from regexplore.http.transport import Transport

    fake = FakeAdapter([Reply(503), Reply(200, {"Docker-Content-Digest": "sha256:..."}, b"{}")])
    t = Transport("https://registry.example")
    fake.mount(t)
    t.request("GET", "/v2/")          # 503, retried, then the 200
    fake.sent                         # the two PreparedRequests, headers included

A reply is a :class:`Reply`, a ``(status, headers, body)`` tuple, or an exception instance to raise
(``requests.ConnectionError()`` for a dropped connection). ``sent`` holds what regexplore sent,
``Authorization`` included: keep it to tests.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

__all__ = ["FakeAdapter", "Reply"]


@dataclass
class Reply:
    """A canned answer: ``status``, ``headers``, ``body`` (bytes, str, or JSON-able: a dict or a
    list is sent as JSON with ``Content-Type: application/json`` unless a type is given)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = b""

    def encoded(self) -> tuple[dict[str, str], bytes]:
        """The headers (with ``Content-Length`` and, for JSON, ``Content-Type``) and the body bytes."""
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        headers.setdefault("Content-Length", str(len(body)))
        return headers, body


Answer = Reply | tuple | BaseException  #: what a FakeAdapter answers with


class FakeAdapter(HTTPAdapter):
    """A ``requests`` adapter that answers from ``replies``: a function of the
    ``requests.PreparedRequest`` returning an answer, or an iterable of answers used in order
    (one more request than answers raises ``AssertionError``). An answer is a :class:`Reply`, a
    ``(status, headers, body)`` tuple, or an exception instance, raised as the adapter's send
    would. Thread-safe; opens no socket.
    """

    def __init__(self, replies: Callable[[requests.PreparedRequest], Answer] | Iterable[Answer]) -> None:
        super().__init__(max_retries=0)
        self._answer = replies if callable(replies) else None
        self._queue = None if callable(replies) else list(replies)
        self._lock = threading.Lock()
        #: every request sent through this adapter, in order
        self.sent: list[requests.PreparedRequest] = []

    def __repr__(self) -> str:
        left = "a function" if self._queue is None else f"{len(self._queue)} replies left"
        return f"<FakeAdapter {len(self.sent)} sent, {left}>"

    def mount(self, transport: Any) -> FakeAdapter:
        """Mount this adapter on ``transport``'s session for http:// and https://; returns self."""
        transport.session.mount("http://", self)
        transport.session.mount("https://", self)
        return self

    def _next(self, request: requests.PreparedRequest) -> Answer:
        with self._lock:
            self.sent.append(request)
            if self._queue is None:
                assert self._answer is not None
                return self._answer(request)
            if not self._queue:
                raise AssertionError(f"FakeAdapter: no reply left for {request.method} {request.url}")
            return self._queue.pop(0)

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        """The next answer as a ``requests.Response`` (its body streams from memory). Raises the
        answer when it is an exception."""
        answer = self._next(request)
        if isinstance(answer, BaseException):
            raise answer
        reply = answer if isinstance(answer, Reply) else Reply(*answer)
        headers, body = reply.encoded()
        raw = HTTPResponse(body=io.BytesIO(body), headers=headers, status=reply.status, preload_content=False,
                           decode_content=False, request_method=request.method)
        resp = self.build_response(request, raw)
        if not stream:
            _ = resp.content
        return resp

    def close(self) -> None:
        """Nothing to close (no connection pool is ever used)."""
