"""Regenerate the vcrpy cassettes in this folder from the real recorded responses in
``../shared/fixtures/real`` (provenance: that folder's README.md). The Docker Hub recordings notebook 03
replays (:data:`TEACHING`) ship in the package: they are written to ``regexplore/jupyter/recordings/``
instead, the one copy the notebooks and these tests read.

Run: ``python tests/recorded/cassettes/build.py`` (``REGEXPLORE_SHARED`` overrides where ``shared`` is).
``--check`` rebuilds in memory and fails if a committed cassette differs.

Rules this script follows (and states in every cassette it writes):

- every response body is a fixture's bytes, unchanged, except where a secret is scrubbed: bearer
  tokens (``token`` / ``access_token``) become ``SCRUBBED-…``, session cookies ``SCRUBBED``;
- requests carry no ``Authorization`` header (vcrpy does not match on headers; the tests inspect
  what the client really sent through a ``before_record_request`` hook instead);
- where a fixture holds only a body (pasted from a blog post) the response headers are the
  minimum needed (``Content-Type``, ``Content-Length``) and say so;
- where an interaction had to be adapted (another repository in a path, a scope, a URL scheme),
  the ``adapted`` field of that interaction says exactly what changed;
- after writing, each cassette is loaded back with vcrpy's own deserializer and every body is
  compared byte for byte with what was meant to be written.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PACKAGED = HERE.parents[2] / "regexplore" / "jupyter" / "recordings"
#: the cassettes that are package data (notebook 03 replays them)
TEACHING = frozenset({"dockerhub_ubuntu_index_2024.yaml", "dockerhub_blob_cdn_redirect.yaml"})
SHARED = Path(os.environ.get("REGEXPLORE_SHARED") or HERE.parents[3] / "shared")
REAL = SHARED / "fixtures" / "real"

SCRUBBED_HUB_TOKEN = "SCRUBBED-dockerhub-anonymous-token"
SCRUBBED_PORTUS_TOKEN = "SCRUBBED-portus-token"
UBUNTU_1710_AMD64 = "sha256:9c4bf7dbb981591d4a1169138471afe4bf5ff5418841d00e30a7ba372e38d6c1"
HUB_CHALLENGE_2015 = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:alpine:pull"'


def fixture(name: str) -> bytes:
    return (REAL / name).read_bytes()


def text(name: str) -> str:
    return fixture(name).decode("utf-8")


def interaction(method: str, uri: str, status: int, reason: str, headers: dict[str, Any], body: bytes | str,
                *, source: str, adapted: str | None = None,
                request_headers: dict[str, list[str]] | None = None,
                request_body: str | None = None) -> dict[str, Any]:
    """One vcrpy interaction (format version 1) plus ``source`` / ``adapted`` fields that vcrpy ignores."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")  # every fixture served here is UTF-8 text (ASCII in fact)
    out: dict[str, Any] = {
        "source": source,
        "request": {
            "body": request_body,
            "headers": request_headers or {},
            "method": method,
            "uri": uri,
        },
        "response": {
            "status": {"code": status, "message": reason},
            "headers": {k: (v if isinstance(v, list) else [v]) for k, v in headers.items()},
            "body": {"string": body},
        },
    }
    if adapted:
        out["adapted"] = adapted
    return out


def header_block(name: str) -> dict[str, list[str]]:
    """The ``name: value`` lines after the status line of a captured header block."""
    headers: dict[str, list[str]] = {}
    for line in text(name).splitlines()[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip(), []).append(v.strip())
    return headers


# --------------------------------------------------------------------------- Docker Hub pieces
def hub_token_body() -> str:
    """The 2024 anonymous token answer with both token values scrubbed (all else byte-exact)."""
    raw = text("dockerhub_auth_token_anonymous_library_ubuntu_pull_2024.json")
    doc = json.loads(raw)
    assert doc["token"] == doc["access_token"]
    return raw.replace(doc["token"], SCRUBBED_HUB_TOKEN)


def hub_unauthorized(uri: str, repo: str, method: str = "GET") -> dict[str, Any]:
    challenge = HUB_CHALLENGE_2015.replace("repository:alpine:pull", f"repository:{repo}:pull")
    # distribution's UNAUTHORIZED body, as the 2019 Portus cassette recorded it, with the name adapted
    body = ("" if method == "HEAD" else
            '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":'
            f'[{{"Type":"repository","Class":"","Name":"{repo}","Action":"pull"}}]}}]}}\n')
    return interaction(
        method, uri, 401, "Unauthorized",
        {"Content-Type": "application/json; charset=utf-8", "Docker-Distribution-Api-Version": "registry/2.0",
         "Www-Authenticate": challenge, "Content-Length": str(len(body.encode()))},
        body,
        source="www_authenticate_challenges_real.txt line 2 (Docker Hub challenge, 2015); body: "
               "vcr_portus_registry_get_image_manifest_2019.yml interaction 1 (distribution's UNAUTHORIZED)",
        adapted=f"scope in the challenge and Name in the body changed from alpine / foo/busybox to {repo}"
                + ("; no body (HEAD)" if method == "HEAD" else ""),
    )


def hub_token(repo: str, *, adapted: str | None = None) -> dict[str, Any]:
    body = hub_token_body()
    return interaction(
        "GET", f"https://auth.docker.io/token?service=registry.docker.io&scope=repository:{repo}:pull",
        200, "OK", {"Content-Type": "application/json", "Content-Length": str(len(body.encode()))}, body,
        source="dockerhub_auth_token_anonymous_library_ubuntu_pull_2024.json (body only was recorded)",
        adapted="token and access_token values scrubbed" + (f"; {adapted}" if adapted else ""),
    )


def cassette_dockerhub_ubuntu_index() -> tuple[str, list[dict[str, Any]]]:
    uri = "https://registry-1.docker.io/v2/library/ubuntu/manifests/latest"
    body = fixture("manifest_oci_index_library_ubuntu_latest_2024.json")
    return (("anonymous token flow against registry-1.docker.io, then the OCI index of library/ubuntu:latest. "
            "The index fixture is G-reformatted (keys sorted by the pasting tool), so its bytes do not hash to "
            "the digest Docker Hub served: it is requested by tag and served WITHOUT Docker-Content-Digest."), [
        hub_unauthorized(uri, "library/ubuntu"),
        hub_token("library/ubuntu"),
        interaction("GET", uri, 200, "OK",
                    {"Content-Type": "application/vnd.oci.image.index.v1+json",
                     "Content-Length": str(len(body)), "Docker-Distribution-Api-Version": "registry/2.0"},
                    body, source="manifest_oci_index_library_ubuntu_latest_2024.json (G-reformatted body)",
                    adapted="headers not recorded: Content-Type from the body's mediaType, Content-Length "
                            "computed; Docker-Content-Digest deliberately absent (the bytes are reformatted)"),
    ])


def cassette_dockerhub_ratelimit(year: str, name: str) -> tuple[str, list[dict[str, Any]]]:
    uri = "https://registry-1.docker.io/v2/ratelimitpreview/test/manifests/latest"
    return (f"Docker Hub's rate-limit probe (HEAD, {year}): anonymous token, then the recorded HEAD headers.", [
        hub_unauthorized(uri, "ratelimitpreview/test", method="HEAD"),
        hub_token("ratelimitpreview/test",
                  adapted="the recorded answer was for scope repository:library/ubuntu:pull; with the token "
                          "scrubbed only expires_in/issued_at remain, which stand for this scope's answer"),
        interaction("HEAD", uri, 200, "OK", header_block(name), "", source=f"{name} (HEAD response headers)"),
    ])


def cassette_dockerhub_blob_cdn() -> tuple[str, list[dict[str, Any]]]:
    uri = f"https://registry-1.docker.io/v2/library/ubuntu/blobs/{UBUNTU_1710_AMD64}"
    excerpt = text("dockerhub_blob_get_307_redirect_2021_EXCERPT.txt")
    location = re.search(r"^location: (\S+)$", excerpt, re.MULTILINE).group(1)  # type: ignore[union-attr]
    orig_hex = "fa4166ff90052a9515b0311468349a94e5c0d45abcee8901db963c189b6a44fd"
    hexd = UBUNTU_1710_AMD64.split(":", 1)[1]
    new_location = location.replace(f"sha256/{orig_hex[:2]}/{orig_hex}", f"sha256/{hexd[:2]}/{hexd}")
    assert new_location != location
    # the excerpt's request lines come first; its response headers follow the status line
    resp_headers = {}
    in_resp = False
    for line in excerpt.splitlines():
        if line.startswith("HTTP/1.1 307"):
            in_resp = True
            continue
        if in_resp and ":" in line:
            k, v = line.split(":", 1)
            resp_headers[k.strip()] = [v.strip()]
    resp_headers["location"] = [new_location]
    cdn = json.loads(text("cdn_blob_response_headers_dependabot_2025.json"))
    cdn_headers = {k.replace("_", "-"): [v] for k, v in cdn.items()}
    body = fixture("manifest_schema2_library_ubuntu_17.10_amd64_dependabot.json")
    assert len(body) == int(cdn["content_length"]) == 1357
    return (("A blob GET on Docker Hub: anonymous token, 307 to the Cloudflare CDN, the CDN's answer. The blob is "
            "the ubuntu:17.10 amd64 manifest (G-verified: 1357 bytes, sha256 = the digest asked for, MD5 = the "
            "CDN's ETag), fetched through the blobs endpoint as distribution stores manifests as blobs."), [
        hub_unauthorized(uri, "library/ubuntu"),
        hub_token("library/ubuntu"),
        interaction("GET", uri, 307, "Temporary Redirect", resp_headers, "",
                    source="dockerhub_blob_get_307_redirect_2021_EXCERPT.txt (response headers)",
                    adapted=f"the recorded redirect was for robberphex/sc-b blob sha256:{orig_hex}; the location "
                            f"path now names {UBUNTU_1710_AMD64} (same URL layout, same verify= value)"),
        interaction("GET", new_location, 200, "OK", cdn_headers, body,
                    source="cdn_blob_response_headers_dependabot_2025.json (headers, snake_case keys turned "
                           "back into header names) + manifest_schema2_library_ubuntu_17.10_amd64_dependabot.json "
                           "(body, G-verified)",
                    adapted="the CDN URL is the adapted location above"),
    ])


# --------------------------------------------------------------------------- Hub web API
def _json_headers(body: str | bytes) -> dict[str, str]:
    n = len(body if isinstance(body, bytes) else body.encode())
    return {"Content-Type": "application/json", "Content-Length": str(n)}


def cassette_hub_search_v1() -> tuple[str, list[dict[str, Any]]]:
    body = fixture("v1_search_talien_crane_2015.json")
    return ("v1 search on index.docker.io (2015 shape: page as a string, is_trusted and is_automated).", [
        interaction("GET", "https://index.docker.io/v1/search?q=talien%2Fcrane&n=25", 200, "OK",
                    _json_headers(body), body,
                    request_headers={"X-Docker-Token": ["true"]},
                    source="v1_search_talien_crane_2015.json (body only)",
                    adapted="the recorded request was ?q=talien/crane&page=1; regexplore asks ?q=talien/crane&n=25 "
                            "(25 = the page_size the answer reports, Hub's default); headers not recorded"),
    ])


def cassette_hub_search_fallback() -> tuple[str, list[dict[str, Any]]]:
    body = fixture("hub_v2_search_repositories_ubuntu_page_size1_2024.json")
    return (("v1 search answering 404, then Hub's v2 search. NO real v1-search 404 was recorded: the 404 is "
            "status-only (empty body, no invented shape) and stands for 'v1 search is gone'."), [
        interaction("GET", "https://index.docker.io/v1/search?q=ubuntu&n=1", 404, "Not Found",
                    {"Content-Length": "0"}, "", request_headers={"X-Docker-Token": ["true"]},
                    source="none: synthetic status-only 404 (protocol.md §9: whether v1 search still answers "
                           "is unverified)"),
        interaction("GET", "https://hub.docker.com/v2/search/repositories/?page_size=1&query=ubuntu", 200, "OK",
                    _json_headers(body), body,
                    source="hub_v2_search_repositories_ubuntu_page_size1_2024.json (body only; same query)"),
    ])


def cassette_hub_tags_ubuntu() -> tuple[str, list[dict[str, Any]]]:
    body = fixture("hub_v2_repositories_library_ubuntu_tags_page_size1_2024.json")
    return (("Hub tag metadata of library/ubuntu, page_size=1 (the request the fixture answered). Page 2 was not "
            "recorded: a client that follows next= asks for a URL this cassette does not hold."), [
        interaction("GET", "https://hub.docker.com/v2/repositories/library/ubuntu/tags/?page_size=1", 200, "OK",
                    _json_headers(body), body,
                    source="hub_v2_repositories_library_ubuntu_tags_page_size1_2024.json (body only)"),
    ])


def cassette_hub_tags_2016() -> tuple[str, list[dict[str, Any]]]:
    body = fixture("hub_v2_repositories_pavel_howdy_tags_2016.json")
    return ("Hub tag metadata, 2016 shape (image_id null, platforms [5], no images[]).", [
        interaction("GET", "https://registry.hub.docker.com/v2/repositories/pavel/howdy/tags/", 200, "OK",
                    _json_headers(body), body,
                    source="hub_v2_repositories_pavel_howdy_tags_2016.json (G-reformatted body only)"),
    ])


# --------------------------------------------------------------------------- Portus (Ruby VCR → vcrpy)
_DROP_RESPONSE = {"transfer-encoding", "connection"}


def _portus(name: str, *, https: bool) -> list[dict[str, Any]]:
    doc = yaml.safe_load(text(name))
    out = []
    for i, it in enumerate(doc["http_interactions"], 1):
        req, resp = it["request"], it["response"]
        notes = ["request Authorization header removed (scrubbed)"] if "Authorization" in req["headers"] else []
        uri = req["uri"]
        headers: dict[str, list[str]] = {}
        for k, v in resp["headers"].items():
            if k.lower() in _DROP_RESPONSE:
                notes.append(f"hop-by-hop response header {k} dropped (the body is stored whole)")
                continue
            if k.lower() == "set-cookie":
                v = [re.sub(r"=([^;]+);", "=SCRUBBED;", c, count=1) for c in v]
                notes.append("session cookie value scrubbed")
            headers[k] = v
        body = resp["body"]["string"]
        m = re.search(r'"token":"([^"]+)"', body)
        if m:
            body = body.replace(m.group(1), SCRUBBED_PORTUS_TOKEN)
            notes.append("token value scrubbed")
        if https:
            uri = uri.replace("http://", "https://", 1)
            for k in list(headers):
                if k.lower() == "www-authenticate":
                    headers[k] = [h.replace('realm="http://', 'realm="https://') for h in headers[k]]
            notes.append("scheme http → https (registry URL and token realm) so a client that refuses to send "
                         "credentials over plain http to a non-loopback host can run the flow")
        req_headers = {k: v for k, v in req["headers"].items() if k not in ("Authorization",)}
        out.append(interaction(req["method"].upper(), uri, resp["status"]["code"], resp["status"]["message"],
                               headers, body, source=f"{name} interaction {i}",
                               adapted="; ".join(notes) or None, request_headers=req_headers))
    return out


def cassette_portus(name: str, https: bool) -> tuple[str, list[dict[str, Any]]]:
    what = ("401 → token (Basic credentials of user flavio) → manifest 200 with a matching Docker-Content-Digest"
            if "2019" in name else
            "401 → token → 404 MANIFEST_UNKNOWN with a string detail and Content-Type text/plain")
    scheme = "https (scheme adapted)" if https else "http, as recorded"
    return f"SUSE/Portus Ruby VCR cassette converted to vcrpy ({scheme}): {what}.", _portus(name, https=https)


# --------------------------------------------------------------------------- ACR (vcrpy already)
def cassette_acr_pages() -> tuple[str, list[dict[str, Any]]]:
    doc = yaml.safe_load(text("vcrpy_azure_acr_catalog_by_page_2021.yaml"))
    out = []
    for i, it in enumerate(doc["interactions"], 1):
        resp = it["response"]
        if resp["status"]["code"] != 200 or "_catalog" not in it["request"]["uri"]:
            continue
        body = resp["body"]["string"]
        headers = dict(resp["headers"])
        note = None
        if "content-length" in headers and headers["content-length"] != [str(len(body.encode()))]:
            note = (f"content-length {headers['content-length'][0]} → {len(body.encode())}: the Azure SDK's recorder "
                    "re-serialised the JSON body (fixtures README), so the recorded length no longer fits it")
            headers["content-length"] = [str(len(body.encode()))]
        out.append(interaction("GET", it["request"]["uri"], 200, "OK", headers, body,
                               source=f"vcrpy_azure_acr_catalog_by_page_2021.yaml interaction {i}", adapted=note))
    return (("ACR's two catalog pages (/acr/v1/_catalog, relative Link with orderby=). The recorded 401s and "
            "the Azure SDK's OAuth2 POST token exchanges are left out: they are the SDK's flow, not ours; the "
            "pages are requested with a bearer token given up front (the recorder's 'REDACTED')."), out)


CASSETTES = {
    "dockerhub_ubuntu_index_2024.yaml": cassette_dockerhub_ubuntu_index,
    "dockerhub_ratelimit_head_2023.yaml": lambda: cassette_dockerhub_ratelimit(
        "2023", "dockerhub_head_manifest_ratelimit_2023_gist.txt"),
    "dockerhub_ratelimit_head_2025.yaml": lambda: cassette_dockerhub_ratelimit(
        "2025", "dockerhub_head_manifest_ratelimit_2025_hub-feedback-2464.txt"),
    "dockerhub_blob_cdn_redirect.yaml": cassette_dockerhub_blob_cdn,
    "hub_search_v1_2015.yaml": cassette_hub_search_v1,
    "hub_search_v1_404_then_v2_2024.yaml": cassette_hub_search_fallback,
    "hub_tags_library_ubuntu_2024.yaml": cassette_hub_tags_ubuntu,
    "hub_tags_pavel_howdy_2016.yaml": cassette_hub_tags_2016,
    "portus_get_image_manifest_2019_http.yaml": lambda: cassette_portus(
        "vcr_portus_registry_get_image_manifest_2019.yml", https=False),
    "portus_get_image_manifest_2019_https.yaml": lambda: cassette_portus(
        "vcr_portus_registry_get_image_manifest_2019.yml", https=True),
    "portus_get_missing_image_manifest_2015_https.yaml": lambda: cassette_portus(
        "vcr_portus_registry_get_missing_image_manifest_2015.yml", https=True),
    "acr_catalog_pages_2021.yaml": cassette_acr_pages,
}


def destination(name: str) -> Path:
    """Where cassette ``name`` is written: the package's recordings for :data:`TEACHING`, else here."""
    return (PACKAGED if name in TEACHING else HERE) / name


def render(name: str) -> str:
    summary, interactions = CASSETTES[name]()
    named = r"[\w.-]+\.(?:json|txt|yml|yaml)"
    sources = sorted({s.strip() for it in interactions for s in re.findall(named, it["source"])})
    head = [f"# {name}: generated by tests/recorded/cassettes/build.py from ../shared/fixtures/real"
            " — do not edit by hand.",
            f"# {summary}", f"# fixtures: {', '.join(sources) or 'none'}",
            "# Each interaction's 'source' names its fixture and 'adapted' says what was changed and why."]
    doc = {"interactions": interactions, "version": 1}
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False, width=1_000_000)
    out = "\n".join(head) + "\n" + body
    _verify(out, interactions)
    return out


def _verify(rendered: str, interactions: list[dict[str, Any]]) -> None:
    """Load ``rendered`` as vcrpy does and check every response body is byte-identical."""
    from vcr.serialize import deserialize
    from vcr.serializers import yamlserializer

    _requests, responses = deserialize(rendered, yamlserializer)
    assert len(responses) == len(interactions)
    for resp, it in zip(responses, interactions):
        want = it["response"]["body"]["string"].encode("utf-8")
        assert resp["body"]["string"] == want, it["request"]["uri"]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in CASSETTES:
        out = render(name)
        path = destination(name)
        if check:
            if not path.exists() or path.read_text() != out:
                stale.append(name)
        else:
            path.write_text(out)
            print(f"wrote {path.relative_to(HERE.parents[2])}")
    if stale:
        print("stale cassettes (run tests/recorded/cassettes/build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
