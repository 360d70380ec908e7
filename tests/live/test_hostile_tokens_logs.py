"""Secrets in anybody's logs, and token servers that never stop talking (issue 10 review, items 3 and 4).

- urllib3.connection logs ``Failed to parse headers (url=…): … unparsed data: '…'`` at WARNING with
  the full URL and the server's raw header text: no password, base64 ``user:password``, token or
  URL signature may reach any log record, of any logger (a handler at DEBUG on the root logger
  sees them all);
- a token answer (a token, a redirect, an error) is read through the capped reader: an endless
  body is ``ResponseTooLarge`` naming the token server, fast and in little memory.

The hostile servers are small stdlib HTTP servers in this file, on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from servers import serve, stop
from servers.bounded import run_bounded

import regexplore as rx

PASSWORD = "Pa55w0rd-very-secret-42"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
TOKEN = "tok-3f9a1c2b7d8e4f60a5b1c2d3e4f5a6b7"
SIGNATURE = "S3cr3tSignatureValue0123456789abcdef"
BLOB = b"hello blob\n" * 10
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BROKEN_LINE = b"This line has no colon "  #: urllib3 cannot parse it: it logs the WARNING


class _Records(logging.Handler):
    """Every record any logger emits, as the text a handler would write plus the record's fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, self.format(record) + " " + repr(vars(record))))

    def names(self) -> set[str]:
        return {name for name, _ in self.seen}

    def leaking(self, *secrets: str) -> list[str]:
        return [text[:300] for _, text in self.seen if any(s in text for s in secrets)]


@pytest.fixture
def records() -> Iterator[_Records]:
    """A handler at DEBUG on the root logger (the root logger at DEBUG meanwhile)."""
    root = logging.getLogger()
    handler, level = _Records(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _answer(handler: BaseHTTPRequestHandler, status: str, headers: dict[str, str], body: bytes = b"",
            broken: bytes = b"") -> None:
    """Write a raw answer (no body to a HEAD); ``broken`` goes in as a header line urllib3 cannot parse."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    raw = "\r\n".join(head).encode() + b"\r\n" + (broken + b"\r\n" if broken else b"") + b"\r\n"
    handler.wfile.write(raw + (b"" if handler.command == "HEAD" else body))


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echoing_basic() -> Iterator[str]:
    """A registry asking for Basic, then echoing the ``Authorization`` it got and the password in a
    header line urllib3 cannot parse."""

    class Handler(_Quiet):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            if not auth:
                _answer(self, "401 Unauthorized", {"WWW-Authenticate": 'Basic realm="r"'})
                return
            _answer(self, "200 OK", {"Content-Type": "application/json",
                                     "Docker-Distribution-API-Version": "registry/2.0"},
                    b'{"repositories":["demo/x"]}', BROKEN_LINE + f"{auth} and {PASSWORD}".encode())

    httpd = serve(Handler)
    yield httpd.url  # type: ignore[attr-defined]
    stop(httpd)


def test_credentials_echoed_in_an_unparseable_header_stay_out_of_every_record(
        echoing_basic: str, records: _Records) -> None:
    reg = rx.Registry(echoing_basic, auth=("alice", PASSWORD), timeout=10)
    assert list(reg.catalog()["repository"]) == ["demo/x"]
    assert "urllib3.connection" in records.names()  # the WARNING was logged, and cleaned
    assert not records.leaking(PASSWORD, BASIC)


@pytest.fixture
def signed_redirect() -> Iterator[str]:
    """A registry that redirects blobs to "object storage" with a signed URL; the storage answers
    with a header line urllib3 cannot parse (its WARNING names the full URL)."""

    class Storage(_Quiet):
        def do_GET(self) -> None:
            _answer(self, "200 OK", {"Content-Type": "application/octet-stream"}, BLOB, BROKEN_LINE)

        do_HEAD = do_GET

    storage = serve(Storage)
    signed = f"{storage.url}/blobs/x?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature={SIGNATURE}"  # type: ignore

    class Registry(_Quiet):
        def do_GET(self) -> None:
            if "/blobs/" in self.path:
                _answer(self, "307 Temporary Redirect", {"Location": signed})
            else:
                _answer(self, "200 OK", {"Content-Type": "application/json",
                                         "Docker-Distribution-API-Version": "registry/2.0"}, b"{}")

        do_HEAD = do_GET

    registry = serve(Registry)
    yield registry.url  # type: ignore[attr-defined]
    stop(registry)
    stop(storage)


def test_a_signed_storage_url_stays_out_of_every_record(signed_redirect: str, records: _Records,
                                                        tmp_path: Path) -> None:
    reg = rx.Registry(signed_redirect, timeout=10)
    paths = reg.download(f"demo/x@{DIGEST}", tmp_path, progress=False, cache=False)
    assert [p.read_bytes() for p in paths] == [BLOB]
    assert "urllib3.connection" in records.names()
    assert not records.leaking(SIGNATURE)


@pytest.fixture
def echoing_bearer() -> Iterator[str]:
    """A token server that answers a token (echoing the Basic credentials in a broken header line),
    and a registry that echoes the Bearer token it gets in one."""

    class Tokens(_Quiet):
        def do_GET(self) -> None:
            _answer(self, "200 OK", {"Content-Type": "application/json"},
                    json.dumps({"token": TOKEN, "expires_in": 300}).encode(),
                    BROKEN_LINE + (self.headers.get("Authorization") or "").encode())

    tokens = serve(Tokens)
    realm = f"{tokens.url}/token"  # type: ignore[attr-defined]

    class Registry(_Quiet):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith("Bearer "):
                _answer(self, "401 Unauthorized",
                        {"WWW-Authenticate": f'Bearer realm="{realm}",service="s",scope="registry:catalog:*"'})
                return
            _answer(self, "200 OK", {"Content-Type": "application/json"}, b'{"repositories":["demo/x"]}',
                    BROKEN_LINE + auth.encode())

    registry = serve(Registry)
    yield registry.url  # type: ignore[attr-defined]
    stop(registry)
    stop(tokens)


def test_tokens_and_token_credentials_stay_out_of_every_record(echoing_bearer: str, records: _Records) -> None:
    reg = rx.Registry(echoing_bearer, auth=("alice", PASSWORD), timeout=10)
    assert list(reg.catalog()["repository"]) == ["demo/x"]
    assert "urllib3.connection" in records.names()
    assert not records.leaking(PASSWORD, BASIC, TOKEN)


def test_a_logger_made_later_under_urllib3_is_cleaned_too(echoing_basic: str, records: _Records) -> None:
    """Not only the loggers that exist: any logger under urllib3, requests or regexplore, created
    now, has the secrets a client holds cut out of its records, traceback included."""
    reg = rx.Registry(echoing_basic, auth=("alice", PASSWORD), timeout=10)
    reg.catalog()
    try:
        raise ValueError(f"the server said {BASIC}")
    except ValueError:
        for name in ("urllib3.brand.new", "requests.later", "regexplore.somewhere.new"):
            logging.getLogger(name).warning("got %s from %s", PASSWORD, "http://h.example/x?sig=abc",
                                            exc_info=True)
    assert {"urllib3.brand.new", "requests.later", "regexplore.somewhere.new"} <= records.names()
    assert not records.leaking(PASSWORD, BASIC, "sig=abc")


# ====================================================================== token servers that never stop
@pytest.fixture
def flooding_token_server() -> Iterator[Any]:
    """A registry whose Bearer realm streams an endless body fast, as a token (200), a redirect
    (302) or an error (401): ``Handler.status`` says which."""

    class Tokens(_Quiet):
        status = "200 OK"

        def do_GET(self) -> None:
            head = (f"HTTP/1.1 {Tokens.status}\r\nContent-Type: application/json\r\n"
                    f"Location: /token-elsewhere\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
            chunk = b" " * (1 << 20)
            frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            try:
                self.wfile.write(head + b'6\r\n{"x":"\r\n')
                for _ in range(4096):  # at most 4 GiB
                    self.wfile.write(frame)
            except OSError:
                pass

    tokens = serve(Tokens)

    class Registry(_Quiet):
        def do_GET(self) -> None:
            _answer(self, "401 Unauthorized", {"WWW-Authenticate": f'Bearer realm="{tokens.url}/token",'  # type: ignore
                                                                   'service="s",scope="registry:catalog:*"'})

    registry = serve(Registry)
    Tokens.url = registry.url  # type: ignore[attr-defined]
    yield Tokens
    stop(registry)
    stop(tokens)


@pytest.mark.parametrize("status", ["200 OK", "302 Found", "401 Unauthorized"])
def test_an_endless_token_answer_is_too_large_fast(flooding_token_server: Any, status: str) -> None:
    flooding_token_server.status = status
    res = run_bounded("""
        import os
        import regexplore as rx
        rx.Registry(os.environ["URL"], auth=("alice", os.environ["PW"]), timeout=20).catalog()
    """, env={"URL": flooding_token_server.url, "PW": PASSWORD, "REGEXPLORE_CACHE": "off"}, timeout=60,
        memory_mb=700)
    assert res.error == "ResponseTooLarge", res.output
    assert "token server 127.0.0.1:" in res.message and PASSWORD not in res.message
    assert res.elapsed < 40, res.elapsed  # stopped at 1 MiB: seconds (interpreter start included), not minutes
    assert res.peak_rss_mb < 300, res.peak_rss_mb


@pytest.fixture
def flooding_redirect() -> Iterator[str]:
    """A registry whose catalog redirects with an endless body, to a catalog that answers."""

    class Registry(_Quiet):
        def do_GET(self) -> None:
            if self.path.startswith("/v2/moved"):
                _answer(self, "200 OK", {"Content-Type": "application/json"}, b'{"repositories":["demo/x"]}')
                return
            chunk = b" " * (1 << 20)
            frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            try:
                self.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: /v2/moved\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(4096):  # at most 4 GiB
                    self.wfile.write(frame)
            except OSError:
                pass

    registry = serve(Registry)
    yield registry.url  # type: ignore[attr-defined]
    stop(registry)


def test_a_redirect_with_an_endless_body_is_not_read(flooding_redirect: str) -> None:
    """``requests`` reads a redirect's whole body even when it does not follow it: our session does not."""
    res = run_bounded("""
        import os
        import regexplore as rx
        result = list(rx.Registry(os.environ["URL"], timeout=20).catalog()["repository"])
    """, env={"URL": flooding_redirect, "REGEXPLORE_CACHE": "off"}, timeout=60, memory_mb=700)
    assert res.value == ["demo/x"], res.output
    assert res.elapsed < 15, res.elapsed
    assert res.peak_rss_mb < 300, res.peak_rss_mb
