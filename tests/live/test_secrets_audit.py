"""Regression tests from a secrets audit: v1 tokens and session cookies out of ``vars()`` and
reprs, Docker config / credential helper secrets out of traceback locals, and ``user:pw@`` in
URLs never turned into an ``Authorization`` header.

Real servers (the in-process v1 index + registry, small loopback HTTP servers, real credential
helper scripts), random secrets on every run.
"""

from __future__ import annotations

import base64
import json
import secrets
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from servers import non_loopback_ip, serve, stop
from test_secrets_and_redirects import _raised
from test_secrets_and_redirects import _shown_with_locals as _traceback_with_locals

from regexplore import Registry
from regexplore.errors import RegistryError
from regexplore.http.auth import resolve_credentials
from regexplore.http.transport import RetryPolicy, Transport
from regexplore.sandbox.v1server import SEED_REPOSITORY, LocalV1Registry

FAST = RetryPolicy(attempts=1, backoff=0.01, max_sleep=0.01, budget=0.1)


def _secret(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


def _shown_with_locals(exc: BaseException) -> str:
    """The error as ``str``/``repr``/``args``, and its traceback as ``traceback`` (capture_locals)
    and ``pytest --showlocals`` print it."""
    return f"{exc}\n{exc!r}\n{exc.args!r}\n{_traceback_with_locals(exc)}"


# ----------------------------------------------------------------- v1 tokens and cookies
def test_v1_tokens_and_session_cookies_stay_out_of_vars_and_reprs() -> None:
    password = _secret("v1pw")
    with LocalV1Registry(users={"alice": password}, seed=True) as srv:
        reg = Registry(srv.url, api="v1", auth=("alice", password))
        assert len(reg.history(f"{SEED_REPOSITORY}:latest")) == 3
        signatures = list(srv._tokens)
        cookies = list(srv._sessions)
        assert signatures and cookies
        v1 = reg.v1
        assert v1 is not None and v1.auth.token_count(SEED_REPOSITORY) > 0
        assert "session" in v1.t.session.cookies  # still kept (and sent only to its origin)
        texts = [repr(vars(v1.auth)), repr(v1.auth), repr(vars(reg.transport)), repr(reg.transport.session.cookies),
                 repr(reg.transport._jars), repr({b: vars(t) for b, t in v1._transports.items()}),
                 reg.trace.to_string(), repr(reg), reg._repr_html_()]
        for text in texts:
            assert password not in text
            assert not any(s in text for s in signatures), text
            assert not any(c in text for c in cookies), text
        reg.close()


# ----------------------------------------------------------------- Docker config and helpers
@pytest.fixture
def docker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    config, bindir = tmp_path / "docker", tmp_path / "bin"
    config.mkdir()
    bindir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{bindir}:{Path('/usr/bin')}:{Path('/bin')}")
    yield config, bindir


def _helper(bindir: Path, name: str, script: str) -> None:
    path = bindir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_docker_config_secrets_stay_out_of_traceback_locals(docker_env: tuple[Path, Path]) -> None:
    config, bindir = docker_env
    password, identity, regtoken = _secret("cfgpw"), _secret("idtoken"), _secret("regtoken")
    auth = base64.b64encode(f"alice:{password}".encode()).decode()
    auths = {"other.example": {"auth": auth, "identitytoken": identity}, "third.example": {"registrytoken": regtoken}}
    _helper(bindir, "fails", "exit 7\n")
    for doc in ({"credsStore": "fails", "auths": auths},
                {"credHelpers": {"127.0.0.1:5000": "missing"}, "auths": auths}):
        (config / "config.json").write_text(json.dumps(doc))
        err = _raised(lambda: resolve_credentials("127.0.0.1:5000", None))
        assert isinstance(err, RegistryError)
        shown = _shown_with_locals(err)
        for value in (password, identity, regtoken, auth):
            assert value not in shown
    # the entries are still read as before
    (config / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))
    creds = resolve_credentials("127.0.0.1:5000", None)
    assert creds is not None and creds.username == "alice" and creds.secret == password


@pytest.mark.parametrize("script", [
    "echo '{\"Username\": \"alice\", \"Secret\": \"@S\"}'; echo 'oops @S' >&2; exit 3\n",  # fails, says the secret
    "echo 'not json @S'\n",
    "echo '[\"@S\"]'\n",  # JSON, but not an object
])
def test_credential_helper_output_stays_out_of_errors_and_locals(docker_env: tuple[Path, Path], script: str) -> None:
    config, bindir = docker_env
    secret = _secret("helper")
    _helper(bindir, "probe", "read x\n" + script.replace("@S", secret))
    (config / "config.json").write_text(json.dumps({"credHelpers": {"127.0.0.1:5000": "probe"}}))
    err = _raised(lambda: resolve_credentials("127.0.0.1:5000", None))
    assert isinstance(err, RegistryError) and "docker-credential-probe" in str(err)
    assert secret not in _shown_with_locals(err)


def test_credential_helper_answer_still_gives_credentials(docker_env: tuple[Path, Path]) -> None:
    config, bindir = docker_env
    secret = _secret("helper")
    _helper(bindir, "probe", f"read x\necho '{{\"Username\": \"alice\", \"Secret\": \"{secret}\"}}'\n")
    (config / "config.json").write_text(json.dumps({"credHelpers": {"127.0.0.1:5000": "probe"}}))
    creds = resolve_credentials("127.0.0.1:5000", None)
    assert creds is not None and creds.username == "alice" and creds.secret == secret
    assert secret not in repr(creds)


# ----------------------------------------------------------------- user:pw@ in URLs
class _Server:
    """A loopback (or ``bind``) server answering every GET with ``answer(path)`` -> (status, headers),
    recording the ``Authorization`` header of each request."""

    def __init__(self, answer: Callable[[str], tuple[int, dict[str, str]]], bind: str = "127.0.0.1") -> None:
        self.seen: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append(self.headers.get("Authorization"))
                status, headers = answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = serve(Handler, bind)
        self.url = self.httpd.url

    def close(self) -> None:
        stop(self.httpd)


def test_userinfo_in_a_redirect_never_becomes_an_authorization_header() -> None:
    ip = non_loopback_ip()
    assert ip, "this machine needs a non-loopback IPv4 address for this test"
    password = _secret("userinfo")
    remote = _Server(lambda path: (200, {"Content-Type": "application/json"}), bind=ip)
    host = remote.url.split("://", 1)[1]
    front = _Server(lambda path: (307, {"Location": f"http://alice:{password}@{host}/blob"}))
    try:
        t = Transport(front.url, retry=FAST)
        assert t.request("GET", "/v2/x/blobs/sha256:0").status_code == 200
        assert remote.seen == [None]  # requests would have sent Basic alice:<password> over plain http
        assert password not in repr(t.trace_records)
    finally:
        front.close()
        remote.close()


def test_userinfo_in_a_request_url_is_refused_without_echoing_it() -> None:
    password = _secret("userinfo")
    server = _Server(lambda path: (200, {}))
    try:
        t = Transport(server.url, retry=FAST)
        url = server.url.replace("http://", f"http://alice:{password}@") + "/v2/"
        with pytest.raises(ValueError) as info:
            t.request("GET", url)
        assert password not in str(info.value) + repr(info.value)
        frame = [f for f, _ in traceback.walk_tb(info.value.__traceback__) if f.f_code.co_name == "request"][-1]
        assert password not in repr(frame.f_locals)
        assert server.seen == []
    finally:
        server.close()


# ----------------------------------------------------------------- credentials typed into names
@pytest.mark.parametrize("form", ["https://alice:{pw}@registry.example", "alice:{pw}@registry.example:5000",
                                  "http://alice:{pw}@127.0.0.1:5000"])
def test_credentials_in_a_registry_url_are_refused_without_a_trace_of_them(form: str) -> None:
    password = _secret("urlpw")
    exc = _raised(lambda: Registry(form.format(pw=password)))
    assert isinstance(exc, ValueError) and "auth=" in str(exc)
    assert password not in f"{exc}\n{exc!r}\n{exc.args!r}"
    ours = [f for f, _ in traceback.walk_tb(exc.__traceback__) if "/regexplore/" in f.f_code.co_filename]
    assert [f.f_code.co_name for f in ours] == ["__init__", "base_url_for"]
    for frame in ours:  # the locals a --showlocals traceback prints (a half-built Registry's repr too)
        assert password not in repr(frame.f_locals)
    assert repr(ours[0].f_locals["self"]) == "Registry('?', auth=?)"


@pytest.mark.parametrize("form", ["alice:{pw}@registry.example/demo/app:v1", "https://alice:{pw}@registry.example/demo"])
def test_credentials_in_an_image_reference_are_not_echoed(form: str) -> None:
    from regexplore import InvalidReference, parse_reference

    password = _secret("refpw")
    exc = _raised(lambda: parse_reference(form.format(pw=password)))
    assert isinstance(exc, InvalidReference) and "REDACTED@registry.example" in str(exc)
    assert password not in f"{exc}\n{exc!r}\n{exc.args!r}"
    digest = "sha256:" + "ab" * 32  # name:tag@digest is not mistaken for credentials
    assert parse_reference(f"demo/app:v1@{digest}").digest == digest
