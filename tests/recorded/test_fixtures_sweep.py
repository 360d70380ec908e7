"""Fixture sweep: parser paths on ../shared/fixtures/real that no other test exercised directly.

Every test names the fixture(s) it reads, and every expected value is read from the fixture
itself (its bytes, its JSON, its recorded headers) or from the fixtures README — never copied
from what regexplore returns. Pure tier: no network, no cassette playback.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import pytest
import yaml
from digests import sha256_digest

import regexplore as rx
from regexplore.http.auth import RegistryAuth, parse_challenges
from regexplore.http.redact import redact_url
from regexplore.http.responses import error_from_response
from regexplore.model import oci
from regexplore.protocol.v1.parse import history_row


def _real(shared_dir, name):
    return shared_dir / "fixtures" / "real" / name


class _Headers(dict):
    """Case-insensitive ``get`` like requests' header dict."""

    def __init__(self, headers):
        super().__init__({k.lower(): (v[0] if isinstance(v, list) else v) for k, v in headers.items()})

    def get(self, key, default=None):
        return super().get(key.lower(), default)


class RecordedResponse:
    """A recorded response (status, headers, body) as error_from_response / _token_from read it."""

    def __init__(self, status, body: bytes, headers, url="https://registry.test.lan/v2/x"):
        self.status_code = status
        self.content = self._content = body
        self._content_consumed = True
        self.headers = _Headers(headers)
        self.url = url
        self.reason = "reason"

    def json(self):
        return json.loads(self.content)


def _ruby_vcr(shared_dir, name):
    return [it["response"] for it in yaml.safe_load(_real(shared_dir, name).read_text())["http_interactions"]]


def _vcrpy(shared_dir, name):
    return yaml.safe_load(_real(shared_dir, name).read_text())["interactions"]


# --------------------------------------------------------------------------- error bodies, as recorded
@pytest.mark.parametrize("fixture, index, cls", [
    ("vcr_portus_registry_get_missing_image_manifest_2015.yml", 0, rx.Unauthorized),  # detail: list
    ("vcr_portus_registry_get_missing_image_manifest_2015.yml", 2, rx.NotFound),  # detail: string, text/plain
    ("vcr_portus_registry_get_image_manifest_2019.yml", 0, rx.Unauthorized),  # detail: list with "Class": ""
])
def test_portus_error_bodies_read_from_the_cassette(shared_dir, fixture, index, cls):
    resp = _ruby_vcr(shared_dir, fixture)[index]
    body = resp["body"]["string"].encode()
    assert int(resp["headers"]["Content-Length"][0]) == len(body)  # the body is whole
    want = json.loads(body)["errors"][0]
    err = error_from_response(RecordedResponse(resp["status"]["code"], body, resp["headers"]))
    assert type(err) is cls
    assert err.status == resp["status"]["code"]
    assert (err.code, err.message, err.detail) == (want["code"], want["message"], want["detail"])


def test_portus_2015_404_is_text_plain_with_a_string_detail(shared_dir):
    resp = _ruby_vcr(shared_dir, "vcr_portus_registry_get_missing_image_manifest_2015.yml")[2]
    assert resp["headers"]["Content-Type"][0].startswith("text/plain")
    err = error_from_response(RecordedResponse(404, resp["body"]["string"].encode(), resp["headers"]))
    assert isinstance(err.detail, str) and err.detail.startswith("unknown manifest name=foo/busybox")


def test_acr_401_bodies_and_challenges(shared_dir):
    """vcrpy_azure_acr_catalog_by_page_2021.yaml: the two recorded 401s (the cassette built from it
    serves only the catalog pages)."""
    its = [it for it in _vcrpy(shared_dir, "vcrpy_azure_acr_catalog_by_page_2021.yaml")
           if it["response"]["status"]["code"] == 401]
    assert len(its) == 2
    for it in its:
        resp = it["response"]
        body = resp["body"]["string"].encode()
        want = json.loads(body)["errors"][0]
        err = error_from_response(RecordedResponse(401, body, resp["headers"], url=it["request"]["uri"]))
        # error="invalid_token" is not insufficient_scope: still Unauthorized, not Denied
        assert type(err) is rx.Unauthorized
        assert (err.code, err.message, err.detail) == (want["code"], want["message"], want["detail"])
        assert err.detail[0] == {"Type": "registry", "Name": "catalog", "Action": "*"}
        [ch] = parse_challenges(resp["headers"]["www-authenticate"][0])
        assert (ch.scheme, ch.realm, ch.service, ch.scopes, ch.error) == (
            "bearer", "https://fake_url.azurecr.io/oauth2/token", "fake_url.azurecr.io", ["fake_scope"],
            "invalid_token")


# --------------------------------------------------------------------------- token answers, as recorded
def _lifetime(auth, resp, realm, want):
    """The token from ``resp`` and whether its expiry is ``want`` seconds after the exchange."""
    before = time.time()
    tok = auth._token_from(resp, [], realm)
    after = time.time()
    return tok, before + want - 0.01 <= tok.expires <= after + want + 0.01


def test_acr_oauth2_token_answer_without_expires_in(shared_dir):
    its = [it for it in _vcrpy(shared_dir, "vcrpy_azure_acr_catalog_by_page_2021.yaml")
           if it["request"]["uri"].endswith("/oauth2/token")]
    assert len(its) == 2
    for it in its:
        body = it["response"]["body"]["string"].encode()
        doc = json.loads(body)
        assert set(doc) == {"access_token"}
        # token spec default 60 s, renewed 10 % early
        tok, ok = _lifetime(RegistryAuth("fake_url.azurecr.io", None),
                            RecordedResponse(200, body, it["response"]["headers"]),
                            "https://fake_url.azurecr.io/oauth2/token", 60 - 6)
        assert tok.value == doc["access_token"] and ok


def test_portus_2019_token_answer_expires_in_and_issued_at(shared_dir):
    resp = _ruby_vcr(shared_dir, "vcr_portus_registry_get_image_manifest_2019.yml")[1]
    body = resp["body"]["string"].encode()
    doc = json.loads(body)
    assert doc["expires_in"] == 900 and "issued_at" in doc
    # the recorded token answer has no Date header: issued_at alone cannot age it (other clock)
    assert "Date" not in resp["headers"]
    tok, ok = _lifetime(RegistryAuth("registry.test.lan", None), RecordedResponse(200, body, resp["headers"]),
                        "https://portus.test.lan/v2/token", doc["expires_in"] - min(30, doc["expires_in"] * 0.1))
    assert tok.value == doc["token"] and ok
    # with the Date the registry sent one exchange later (the token answer itself recorded none)
    date = _ruby_vcr(shared_dir, "vcr_portus_registry_get_image_manifest_2019.yml")[2]["headers"]["Date"][0]
    age = (parsedate_to_datetime(date) - datetime.fromisoformat(doc["issued_at"])).total_seconds()
    assert age == 0
    tok, ok = _lifetime(RegistryAuth("registry.test.lan", None),
                        RecordedResponse(200, body, {**resp["headers"], "Date": [date]}),
                        "https://portus.test.lan/v2/token", doc["expires_in"] - age - 30)
    assert ok


def test_portus_2015_token_answer_has_only_a_token(shared_dir):
    resp = _ruby_vcr(shared_dir, "vcr_portus_registry_get_missing_image_manifest_2015.yml")[1]
    body = resp["body"]["string"].encode()
    doc = json.loads(body)
    assert set(doc) == {"token"}
    tok, ok = _lifetime(RegistryAuth("registry.test.lan", None), RecordedResponse(200, body, resp["headers"]),
                        "https://portus.test.lan/v2/token", 60 - 6)
    assert tok.value == doc["token"] and ok


def test_dockerhub_token_issued_at_with_nanoseconds_against_a_date_header(shared_dir):
    """dockerhub_auth_token_anonymous_library_ubuntu_pull_2024.json: issued_at has 9 fractional
    digits; an answer whose Date is 20 s after it has 20 s less to live."""
    body = _real(shared_dir, "dockerhub_auth_token_anonymous_library_ubuntu_pull_2024.json").read_bytes()
    doc = json.loads(body)
    claims = json.loads(base64.urlsafe_b64decode(doc["token"].split(".")[1] + "=="))
    issued = datetime.strptime(doc["issued_at"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    assert int(issued.timestamp()) == claims["iat"]  # README: the JWT's iat matches issued_at
    date = issued.replace(microsecond=0) + timedelta(seconds=21)
    age = (date - issued).total_seconds()
    assert 20 < age <= 21
    tok, ok = _lifetime(RegistryAuth("registry-1.docker.io", None),
                        RecordedResponse(200, body, {"Date": format_datetime(date, usegmt=True)}),
                        "https://auth.docker.io/token", doc["expires_in"] - age - 30)
    assert tok.value == doc["token"] and ok


# --------------------------------------------------------------------------- manifests and configs
def test_httpd_image_summary_size_is_config_plus_layers(shared_dir):
    man_raw = _real(shared_dir, "manifest_schema2_httpd-copy.json").read_bytes()
    cfg_raw = _real(shared_dir, "image_config_httpd_2.4.23_digest_9ca4bda0.json").read_bytes()
    man_doc, cfg = json.loads(man_raw), json.loads(cfg_raw)
    m = oci.Manifest.from_bytes(man_raw, man_doc["mediaType"])
    assert m.digest == sha256_digest(man_raw)
    s = oci.image_summary(m, cfg)
    assert s["size"] == len(cfg_raw) + sum(layer["size"] for layer in man_doc["layers"])
    assert (s["os"], s["architecture"]) == (cfg["os"], cfg["architecture"]) == ("linux", "amd64")
    assert s["created"] == datetime(2016, 9, 23, 23, 20, 45, 789764, tzinfo=UTC)  # "…45.78976459Z"
    rows = oci.history_rows(m, cfg)
    assert [r["created_by"] for r in rows] == [h.get("created_by", "") for h in cfg["history"]]


def test_schema1_digest_with_a_consistent_signature_header(shared_dir):
    """manifest_schema1_signed_httpd-copy_from_registry.json has an edited formatLength (README:
    10895 for a 10900-byte payload). With the header put right, the digest is the sha256 of the
    document without its ``signatures`` — valid JSON equal to the document minus that key."""
    raw = _real(shared_dir, "manifest_schema1_signed_httpd-copy_from_registry.json").read_bytes()
    doc = json.loads(raw)
    cut = raw.index(b',\n   "signatures"')
    assert cut == 10900
    protected = json.loads(base64.urlsafe_b64decode(doc["signatures"][0]["protected"] + "=="))
    assert protected["formatLength"] == 10895
    tail = base64.urlsafe_b64decode(protected["formatTail"] + "=" * (-len(protected["formatTail"]) % 4))
    payload = raw[:cut] + tail
    assert json.loads(payload) == {k: v for k, v in doc.items() if k != "signatures"}
    fixed = dict(protected, formatLength=cut)
    enc = base64.urlsafe_b64encode(json.dumps(fixed).encode()).rstrip(b"=").decode()
    old = doc["signatures"][0]["protected"].encode()
    fixed_raw = raw.replace(old, enc.encode())
    assert fixed_raw[:cut] == raw[:cut]  # the payload bytes are untouched
    m = oci.Manifest.from_bytes(fixed_raw, oci.SCHEMA1_SIGNED)
    assert m.digest == sha256_digest(payload)
    want = sha256_digest(payload)
    assert oci.Manifest.from_bytes(fixed_raw, oci.SCHEMA1_SIGNED, expected=want).digest == want
    # schema1's own fields, oldest first
    rows = oci.history_rows(m, None)
    assert len(rows) == len(doc["history"]) == len(doc["fsLayers"]) == 15
    top = json.loads(doc["history"][0]["v1Compatibility"])
    summary = oci.image_summary(m, None)
    assert summary["architecture"] == doc["architecture"] == "amd64"
    assert summary["created"] == oci.parse_time(top["created"]) == rows[-1]["created"]


def test_ubuntu_1710_list_rows_match_the_body(shared_dir):
    raw = _real(shared_dir, "manifest_list_docker_v2_library_ubuntu_17.10_dependabot.json").read_bytes()
    doc = json.loads(raw)
    lst = oci.Manifest.from_bytes(raw)
    rows = oci.platform_rows(lst.json)
    assert [(r["digest"], r["size"], r["media_type"], r["os"], r["architecture"], r["variant"]) for r in rows] == [
        (e["digest"], e["size"], e["mediaType"], e["platform"]["os"], e["platform"]["architecture"],
         e["platform"].get("variant")) for e in doc["manifests"]]
    for e in doc["manifests"]:
        p = e["platform"]
        spec = "/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)
        assert oci.choose_platform(lst.json, spec) == e
    child = _real(shared_dir, "manifest_schema2_library_ubuntu_17.10_amd64_dependabot.json").read_bytes()
    amd64 = oci.choose_platform(lst.json, "linux/amd64")
    assert sha256_digest(child) == amd64["digest"] and len(child) == amd64["size"]


def test_ubuntu_arm64_config_created_and_created_by(shared_dir):
    cfg = json.loads(_real(shared_dir, "image_config_ubuntu_24.04_arm64v8_2024_reformatted.json").read_text())
    man = oci.Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "1" * 64,
                    "size": 1}]}).encode())
    rows = oci.history_rows(man, cfg)
    assert [r["created"] for r in rows] == [oci.parse_time(h["created"]) for h in cfg["history"]]
    assert all(r["created"] is not None for r in rows)
    assert [r["created_by"] for r in rows] == [h.get("created_by", "") for h in cfg["history"]]
    assert [r["comment"] for r in rows] == [h.get("comment", "") for h in cfg["history"]]


# --------------------------------------------------------------------------- v1 image JSON, named literally
@pytest.mark.parametrize("fixture", [
    "v1_image_json_dynport_redis_8dbd9e39.json",
    "v1_image_json_dynport_redis_0e03f251.json",
    "v1_image_json_dynport_redis_e0acc436.json",
])
def test_dynport_redis_image_json_rows(shared_dir, fixture):
    doc = json.loads(_real(shared_dir, fixture).read_text())
    assert doc["id"].startswith(fixture.rsplit("_", 1)[1][:8])
    row = history_row(0, doc)
    cmd = doc["container_config"].get("Cmd")
    assert row["id"] == doc["id"] and row["parent"] == doc.get("parent")
    assert row["size"] == doc["Size"]
    assert row["created_by"] == (" ".join(cmd) if cmd else "")
    assert row["created"] == oci.parse_time(doc["created"]) and row["created"] is not None
    assert row["comment"] == doc.get("comment", "")


def test_dynport_redis_parent_chain(shared_dir):
    docs = {n: json.loads(_real(shared_dir, f"v1_image_json_dynport_redis_{n}.json").read_text())
            for n in ("8dbd9e39", "0e03f251", "e0acc436")}
    by_id = {d["id"]: d for d in docs.values()}
    chain, cur = [], docs["e0acc436"]["id"]
    while cur:
        chain.append(cur[:8])
        cur = by_id[cur].get("parent")
    assert chain == ["e0acc436", "0e03f251", "8dbd9e39"]  # README


# --------------------------------------------------------------------------- the CDN redirect excerpt
def test_cdn_redirect_location_is_redacted(shared_dir):
    text = _real(shared_dir, "dockerhub_blob_get_307_redirect_2021_EXCERPT.txt").read_text()
    location = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("location: "))
    verify = location.split("verify=", 1)[1]
    red = redact_url(location)
    assert verify not in red and "verify=REDACTED" in red
    assert red.split("?")[0] == location.split("?")[0]  # path kept
