"""Pure auth tests: challenge parsing on real recorded headers, token answers, credential sources."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pytest
import requests

from regexplore.errors import InsecureCredentials, RegistryError
from regexplore.http.auth import (
    Credentials,
    RegistryAuth,
    parse_challenges,
    resolve_credentials,
    scope_for,
)
from regexplore.http.transport import Transport

FIXTURES = Path(os.environ.get("REGEXPLORE_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "fixtures/real"

# What each line of www_authenticate_challenges_real.txt must parse to (realm, service, scope, error).
EXPECTED = [
    ("https://auth.docker.io/token", "registry.docker.io", "repository:alpine:pull", None),
    ("http://portus.test.lan/v2/token", "registry.test.lan", None, None),
    ("http://portus.test.lan/v2/token", "registry.test.lan", "registry:catalog:*", None),
    ("http://portus.test.lan/v2/token", "registry.test.lan", "repository:foo/busybox:pull", None),
    ("https://fake_url.azurecr.io/oauth2/token", "fake_url.azurecr.io", "fake_scope", "invalid_token"),
    ("https://myregistry.azurecr.io/oauth2/token", "myregistry.azurecr.io",
     "repository:library/hello-world:metadata_read", None),
    ("https://gcr.io/v2/token", "gcr.io", None, None),
]


def _challenge_lines() -> list[str]:
    text = (FIXTURES / "www_authenticate_challenges_real.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_every_recorded_challenge_parses() -> None:
    lines = _challenge_lines()
    assert len(lines) == len(EXPECTED)
    for line, (realm, service, scope, error) in zip(lines, EXPECTED):
        [ch] = parse_challenges(line)
        assert ch.scheme == "bearer"
        assert (ch.realm, ch.service, ch.params.get("scope"), ch.error) == (realm, service, scope, error), line


def test_challenge_edge_cases() -> None:
    several = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://a/t",scope="x:y:pull x:z:pull"')
    assert [c.scheme for c in several] == ["basic", "bearer"]
    assert several[0].realm == "Registry Realm"
    assert several[1].scopes == ["x:y:pull", "x:z:pull"]
    esc = parse_challenges(r'Bearer realm="https://a/t",error="insufficient_scope",error_description="a \"q\", b"')
    assert esc[0].error == "insufficient_scope" and esc[0].params["error_description"] == 'a "q", b'
    assert parse_challenges("Negotiate abc==, Basic realm=x")[1].realm == "x"
    assert parse_challenges("") == [] and parse_challenges(None) == []


def test_scope_for_paths() -> None:
    base = "https://r.example:5000"
    assert scope_for(f"{base}/v2/library/ubuntu/manifests/latest", "GET") == "repository:library/ubuntu:pull"
    assert scope_for(f"{base}/v2/a/b/c/blobs/uploads/", "POST") == "repository:a/b/c:pull,push"
    assert scope_for(f"{base}/v2/a/manifests/sha256:00", "DELETE") == "repository:a:delete"
    assert scope_for(f"{base}/v2/_catalog?n=10", "GET") == "registry:catalog:*"
    assert scope_for(f"{base}/v2/", "GET") is None


class _FakeResponse:
    """Just what ``_token_from`` reads from a response: the recorded JSON body."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.content = body

    def json(self) -> object:
        return json.loads(self._body)


def test_docker_hub_anonymous_token_fixture_gives_token_and_expiry() -> None:
    body = (FIXTURES / "dockerhub_auth_token_anonymous_library_ubuntu_pull_2024.json").read_bytes()
    doc = json.loads(body)
    auth = RegistryAuth("registry-1.docker.io", None)
    before = time.time()
    tok = auth._token_from(_FakeResponse(body), ["repository:library/ubuntu:pull"], "https://auth.docker.io/token")
    assert tok.value == doc["token"]
    # expires_in 300, renewed 30 s early, counted from the exchange
    assert before + 300 - 30 - 1 <= tok.expires <= time.time() + 300 - 30
    auth._tokens["repository:library/ubuntu:pull"] = tok
    info = auth.whoami()
    assert info["subject"] == "" and info["scopes"] == ["repository:library/ubuntu:pull"]
    assert doc["token"] not in repr(info)
    hdr = auth.headers_for("https://registry-1.docker.io/v2/library/ubuntu/manifests/latest", "GET", None)
    assert hdr == {"Authorization": f"Bearer {doc['token']}"}


def test_token_answer_variants() -> None:
    auth = RegistryAuth("r", None)
    only_access = auth._token_from(_FakeResponse(b'{"access_token": "A"}'), [], "https://r/t")
    assert only_access.value == "A"
    assert 59 - 6 - 1 <= only_access.expires - time.time() <= 60  # expires_in absent: 60 s
    with pytest.raises(RegistryError, match="without a token"):
        auth._token_from(_FakeResponse(b'{"expires_in": 60}'), [], "https://r/t")


def test_http_realm_on_remote_host_is_refused_before_any_request() -> None:
    auth = RegistryAuth("registry.example", Credentials("alice", "pw-never-sent"))
    t = Transport("https://registry.example", auth=auth)
    www = 'Bearer realm="http://portus.test.lan/v2/token",service="registry.test.lan"'
    with pytest.raises(InsecureCredentials) as info:
        auth.handle_challenge(www, "https://registry.example/v2/x/manifests/1", "GET", None, t)
    assert "pw-never-sent" not in str(info.value) + repr(info.value)
    assert t.trace_records == []  # nothing was sent


# ----------------------------------------------------------------- credential sources
def _write_config(folder: Path, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(doc))


def test_explicit_credentials_and_repr_hide_secret() -> None:
    c = resolve_credentials("h:5000", ("alice", "s3cret-XYZ"))
    assert (c.username, c.secret, c.kind, c.source) == ("alice", "s3cret-XYZ", "password", "explicit")
    t = resolve_credentials("h:5000", "registry-token-XYZ")
    assert t.kind == "token" and t.username is None
    for obj in (c, t, RegistryAuth("h:5000", c), RegistryAuth("h:5000", t)):
        assert "XYZ" not in repr(obj) and "XYZ" not in str(obj)
    assert resolve_credentials("h:5000", False) is None
    with pytest.raises(TypeError):
        resolve_credentials("h:5000", 42)


def test_docker_config_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    _write_config(tmp_path / "d", {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpass").decode()},
        "myreg.example:5000": {"auth": base64.b64encode(b"bob:pa:ss").decode()},
        "https://acr.example.io": {"auth": base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode(),
                                   "identitytoken": "refresh-XYZ"},
        "empty.example": {},
    }})
    hub = resolve_credentials("registry-1.docker.io", None)
    assert (hub.username, hub.secret) == ("hubuser", "hubpass")
    assert hub.source == f"docker config {tmp_path / 'd' / 'config.json'}"
    bob = resolve_credentials("myreg.example:5000", None)
    assert (bob.username, bob.secret) == ("bob", "pa:ss")  # only the first ':' splits
    acr = resolve_credentials("acr.example.io", None)
    assert acr.kind == "identitytoken" and acr.secret == "refresh-XYZ"
    assert resolve_credentials("empty.example", None) is None
    assert resolve_credentials("other.example", None) is None


def _install_helper(bin_dir: Path, name: str, answers: dict[str, dict]) -> Path:
    """A real docker-credential-<name> executable speaking the helper protocol."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"answers = {json.dumps(answers)!r}\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(log)!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
        "a = json.loads(answers).get(server)\n"
        "if a is None:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps(a))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log


def test_credential_helpers_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    log_helper = _install_helper(bin_dir, "rxhelper", {
        "ghcr.example": {"ServerURL": "ghcr.example", "Username": "gh", "Secret": "ghp-XYZ"},
    })
    log_store = _install_helper(bin_dir, "rxstore", {
        "https://index.docker.io/v1/": {"ServerURL": "https://index.docker.io/v1/", "Username": "<token>",
                                        "Secret": "identity-XYZ"},
    })
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    _write_config(tmp_path / "d", {"credsStore": "rxstore", "credHelpers": {"ghcr.example": "rxhelper"},
                                   "auths": {"https://index.docker.io/v1/": {}}})
    gh = resolve_credentials("ghcr.example", None)
    assert (gh.username, gh.secret, gh.source) == ("gh", "ghp-XYZ", "credential helper rxhelper")
    assert log_helper.read_text() == "get ghcr.example\n"
    hub = resolve_credentials("index.docker.io", None)
    assert hub.kind == "identitytoken" and hub.secret == "identity-XYZ"
    assert log_store.read_text() == "get https://index.docker.io/v1/\n"
    assert resolve_credentials("nothing.example", None) is None  # store says "not found"
    assert "XYZ" not in repr(gh) + repr(hub) + gh.describe() + hub.describe()


def test_missing_helper_is_an_error_not_silence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    _write_config(tmp_path / "d", {"credHelpers": {"h.example": "nosuchhelper"}})
    with pytest.raises(RegistryError, match="docker-credential-nosuchhelper is not on PATH"):
        resolve_credentials("h.example", None)


def test_basic_header_roundtrip() -> None:
    c = Credentials("alice", "p:w")
    assert base64.b64decode(c.basic_header().split()[1]) == b"alice:p:w"
    assert requests.auth._basic_auth_str("alice", "p:w") == c.basic_header()
