"""The error tree on real error bodies, redaction, and the frames' fixed columns and dtypes."""

import pandas as pd
import pytest

import regexplore as rx
from regexplore.http.redact import redact_url
from regexplore.http.responses import error_from_response, parse_error_body
from regexplore.model import frames


class FakeResponse:
    """Only what error_from_response reads; the bodies are the real recorded ones."""

    def __init__(self, status, body, content_type="application/json", headers=None, url="https://r.example/v2/x"):
        self.status_code = status
        self.content = body
        self._content = body
        self._content_consumed = True
        self.headers = {"Content-Type": content_type, **(headers or {})}
        self.url = url
        self.reason = "reason"


# bodies copied byte for byte from the fixtures named
PORTUS_401 = (b'{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested resource is not authorized",'
              b'"detail":[{"Type":"repository","Name":"foo/busybox","Action":"pull"}]}]}')  # vcr_portus_*_2015.yml
PORTUS_404_TEXT = (b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown",'
                   b'"detail":"unknown manifest name=foo/busybox tag=2.0.0"}]}')


def test_error_bodies_from_fixtures(shared_dir):
    text = (shared_dir / "fixtures/real/vcr_portus_registry_get_missing_image_manifest_2015.yml").read_text()
    assert "MANIFEST_UNKNOWN" in text and "unknown manifest name=foo/busybox tag=2.0.0" in text
    err = error_from_response(FakeResponse(404, PORTUS_404_TEXT, "text/plain; charset=utf-8"))
    assert isinstance(err, rx.NotFound)
    assert err.code == "MANIFEST_UNKNOWN" and err.status == 404
    assert err.detail == "unknown manifest name=foo/busybox tag=2.0.0"
    err = error_from_response(FakeResponse(401, PORTUS_401))
    assert isinstance(err, rx.Unauthorized) and err.detail[0]["Name"] == "foo/busybox"
    assert "access to the requested resource is not authorized" in str(err)


@pytest.mark.parametrize("body, code, message", [
    (b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":null}]}',
     "DENIED", "requested access to the resource is denied"),
    (b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}',
     "NAME_UNKNOWN", "repository name not known to registry"),
    (b'{"error": "Image already exists"}', None, "Image already exists"),
    (b"Too Many Requests (HAP429).\n", None, "Too Many Requests (HAP429)."),
    (b"", None, None),
])
def test_parse_error_body_shapes(body, code, message):
    got_code, got_message, _ = parse_error_body(body)
    assert (got_code, got_message) == (code, message)


def test_too_many_requests_carries_retry_after():
    err = error_from_response(FakeResponse(429, b"Too Many Requests (HAP429).", "text/plain",
                                           headers={"Retry-After": "7"}))
    assert isinstance(err, rx.TooManyRequests) and err.retry_after == 7.0


def test_redaction_of_signed_urls_and_userinfo():
    url = ("https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/ab/abc/data"
           "?verify=1632160800-secretsig%3D&X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA/x&keep=1")
    red = redact_url(url)
    assert "secretsig" not in red and "deadbeef" not in red and "AKIA" not in red
    assert "keep=1" in red and red.startswith("https://production.cloudflare.docker.com/")
    assert "hunter2" not in redact_url("https://bob:hunter2@r.example/v2/")
    err = rx.RegistryError("boom", url=url)
    assert "deadbeef" not in str(err) and "deadbeef" not in repr(err)


@pytest.mark.parametrize("kind", sorted(frames.COLUMNS))
def test_every_frame_has_fixed_columns_and_dtypes_even_when_empty(kind):
    df = frames.make_frame(kind, [])
    assert list(df.columns) == list(frames.COLUMNS[kind])
    for col, dtype in frames.COLUMNS[kind].items():
        assert str(df[col].dtype) == dtype, (kind, col, df[col].dtype)


def test_frame_fills_missing_values_with_na():
    df = frames.make_frame("history", [{"step": 0, "created": "2024-01-01T00:00:00Z", "size": None}])
    assert df["size"].isna().all() and df["created"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert str(df["size"].dtype) == "Int64"
    assert "| history |" in frames.columns_markdown()
