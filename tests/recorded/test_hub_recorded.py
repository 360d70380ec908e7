"""Docker Hub's own endpoints (regexplore.protocol.hub): parsers on the real recorded bodies, and
``HubClient`` against vcrpy cassettes built from them (tests/recorded/cassettes/build.py states each
cassette's fixtures and adaptations). The ``Registry`` facade tests at the end need the
``search`` / Hub-backed ``tags(details=True)`` methods of registry.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import vcr
from vcr.errors import CannotOverwriteExistingCassetteException

import regexplore as rx
from regexplore.model.frames import COLUMNS, make_frame
from regexplore.protocol.hub import (
    HubClient,
    filter_catalog_search,
    hub_repository,
    parse_hub_tags,
    parse_v1_search,
    parse_v2_search,
    parse_web_rate_limit,
)

CASSETTES = Path(__file__).parent / "cassettes"
REAL = Path(os.environ.get("REGEXPLORE_SHARED") or Path(__file__).resolve().parents[3] / "shared") / "fixtures" / "real"
UBUNTU_PLATFORMS = ["linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux/ppc64le", "linux/riscv64", "linux/s390x"]


@contextmanager
def play(name: str, **kw) -> Iterator[tuple[vcr.cassette.Cassette, list]]:
    """Play a cassette offline; yield it and the requests the client really sent (in order)."""
    sent: list = []
    with vcr.VCR(record_mode="none", **kw).use_cassette(str(CASSETTES / name)) as cass:
        original = cass.play_response

        def play_and_capture(request):
            response = original(request)
            sent.append(request)
            return response

        cass.play_response = play_and_capture
        yield cass, sent


def real_json(name: str):
    return json.loads((REAL / name).read_text())


@pytest.fixture(autouse=True)
def _no_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


# --------------------------------------------------------------------------- parsers on real bodies
def test_v1_search_2015_page_as_string_trusted_and_automated():
    rows, meta = parse_v1_search(real_json("v1_search_talien_crane_2015.json"))
    assert rows == [{"name": "talien/crane", "description": "", "stars": 0, "official": False,
                     "automated": True, "pulls": None}]
    assert meta == {"total": 1, "page": 1, "num_pages": 1, "page_size": 25}  # "page": "1" → 1


def test_v1_search_2022_excerpt_only_complete_results_are_salvaged():
    """The 2022 mysql body is a truncated issue excerpt (cut inside the 4th result), so it is NOT JSON
    and is not served by any cassette. What it can still show: the 2022 shape (page an int,
    pull_count present, star_count 0) — parsed from the three complete results, the cut one dropped."""
    text = (REAL / "v1_search_index_docker_io_mysql_2022_EXCERPT.txt").read_text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    salvaged = text[: text.rindex("},") + 1] + "]}"  # close after the last complete result object
    doc = json.loads(salvaged)
    assert isinstance(doc["page"], int)
    rows, meta = parse_v1_search(doc)
    assert [r["name"] for r in rows] == ["mysql", "mariadb", "phpmyadmin"]
    assert [r["pulls"] for r in rows] == [3282532963, 2475131861, 43383449]
    assert {r["stars"] for r in rows} == {0}  # the Hub bug of the time, kept as sent
    assert all(r["official"] and r["automated"] is False for r in rows)
    assert meta == {"total": 30925, "page": 1, "num_pages": 1237, "page_size": 25}


def test_v1_search_python_registry_shape_with_null_description():
    # docker-archive/docker-registry search.py: {"query", "num_results", "results": [{"name", "description": null}]}
    rows, meta = parse_v1_search({"query": "busy", "num_results": 1,
                                  "results": [{"name": "library/busybox", "description": None}]})
    assert rows == [{"name": "library/busybox", "description": None, "stars": None, "official": None,
                     "automated": None, "pulls": None}]
    assert meta["total"] == 1 and meta["page"] is None


def test_v1_search_rejects_what_is_not_a_search_answer():
    with pytest.raises(ValueError):
        parse_v1_search(["not", "a", "dict"])
    with pytest.raises(ValueError):
        parse_v2_search({"errors": []})


def test_v2_search_2024():
    rows, count, nxt = parse_v2_search(real_json("hub_v2_search_repositories_ubuntu_page_size1_2024.json"))
    assert rows == [{"name": "ubuntu", "description": "Ubuntu is a Debian-based Linux operating system based on "
                     "free software.", "stars": 17303, "official": True, "automated": False, "pulls": 9419966493}]
    assert count == 10000
    assert nxt == "https://hub.docker.com/v2/search/repositories/?page=2&page_size=1&query=ubuntu"


def test_hub_tags_2024_rows():
    rows, count, nxt = parse_hub_tags(real_json("hub_v2_repositories_library_ubuntu_tags_page_size1_2024.json"),
                                      "library/ubuntu")
    assert count == 644
    assert nxt == "https://hub.docker.com/v2/repositories/ubuntu/tags/?page=2&page_size=1"  # \u0026 decoded
    (row,) = rows
    assert row["tag"] == "devel"
    assert row["digest"] == "sha256:c62f1babc85f8756f395e6aabda682acd7c58a1b0c3bea250713cd0184a93efa"
    assert row["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert row["size"] == 34157024 == row["images"][0]["size"]  # full_size is amd64's, not the sum
    assert row["created"] == "2024-10-02T01:50:27.90536Z"
    assert (row["os"], row["architecture"]) == ("linux", "amd64")
    assert row["platforms"] == UBUNTU_PLATFORMS
    assert row["images_missing"] is False
    assert row["images"][1] == {
        "digest": "sha256:1c274f6fa5acd46af265b71438c44eaee8f8db6a5d901e972920e311cfc69326", "os": "linux",
        "architecture": "arm", "variant": "v7", "os_version": None, "size": 33319358, "status": "active",
        "last_pushed": "2024-10-02T01:26:16.551432Z", "last_pulled": "2024-10-02T23:21:46.615696Z",
        "platform": "linux/arm/v7"}


def test_hub_tags_2016_shape_without_images():
    rows, count, nxt = parse_hub_tags(real_json("hub_v2_repositories_pavel_howdy_tags_2016.json"), "pavel/howdy")
    (row,) = rows
    assert (row["tag"], row["size"], row["created"]) == ("latest", 5271296, "2016-06-10T01:17:04.137063Z")
    assert row["digest"] is None and row["media_type"] is None
    assert row["images_missing"] is True
    assert row["platforms"] is None  # unknown, not "no platforms"
    assert (count, nxt) == (1, None)


def test_hub_tag_rows_make_a_tags_details_frame():
    rows, _, _ = parse_hub_tags(real_json("hub_v2_repositories_library_ubuntu_tags_page_size1_2024.json"),
                                "library/ubuntu")
    df = make_frame("tags_details", rows)
    assert list(df.columns) == list(COLUMNS["tags_details"])
    assert df.loc[0, "created"] == pd.Timestamp("2024-10-02T01:50:27.90536Z")
    assert df.loc[0, "size"] == 34157024 and str(df["size"].dtype) == "Int64"
    assert df.loc[0, "platforms"] == UBUNTU_PLATFORMS


def test_web_rate_limit_headers():
    # header names from Docker's docs (protocol.md §4); none of the recorded Hub answers carried them
    assert parse_web_rate_limit({"Content-Type": "application/json"}) is None
    assert parse_web_rate_limit({"X-RateLimit-Limit": "180", "X-RateLimit-Remaining": "179",
                                 "X-RateLimit-Reset": "1727917929"}) == {
        "limit": 180, "remaining": 179, "reset": 1727917929, "retry_after": None}


def test_hub_repository_names():
    assert hub_repository("ubuntu") == "library/ubuntu"
    assert hub_repository("docker.io/library/ubuntu") == "library/ubuntu"
    assert hub_repository("pavel/howdy:latest") == "pavel/howdy"
    with pytest.raises(ValueError):
        hub_repository(" / ")


def test_filter_catalog_search_on_real_catalog_names():
    names = ["library/alpine", "library/busybox", "library/hello-world"]  # ACR's recorded catalog pages
    assert [r["name"] for r in filter_catalog_search(names, "busy")] == ["library/busybox"]
    assert [r["name"] for r in filter_catalog_search(names, "LIBRARY  hello")] == ["library/hello-world"]
    assert [r["name"] for r in filter_catalog_search(names, "")] == names
    assert len(filter_catalog_search(names, "library", limit=2)) == 2
    assert filter_catalog_search(names, "nginx") == []
    assert filter_catalog_search(names, "alp")[0] == {"name": "library/alpine", "description": None, "stars": None,
                                                       "official": None, "automated": None, "pulls": None}


# --------------------------------------------------------------------------- HubClient against cassettes
def test_search_v1_sends_x_docker_token_and_no_credentials():
    with play("hub_search_v1_2015.yaml") as (cass, sent):
        hub = HubClient()
        result = hub.search("talien/crane")
        assert cass.all_played
    assert result.source == "index.docker.io/v1/search"
    assert result.total == 1 and result.notes == []
    assert [r["name"] for r in result.rows] == ["talien/crane"]
    (req,) = sent
    assert req.headers.get("X-Docker-Token") == "true"
    assert req.headers.get("Authorization") is None
    assert dict(req.query) == {"q": "talien/crane", "n": "25"}
    assert hub.web_rate_limit is None  # the recorded answer had no X-RateLimit-* headers


def test_search_falls_back_to_v2_when_v1_answers_404():
    with play("hub_search_v1_404_then_v2_2024.yaml") as (cass, sent):
        result = HubClient().search("ubuntu", limit=1)
        assert cass.all_played
    assert [(r.host, r.path) for r in sent] == [("index.docker.io", "/v1/search"),
                                                ("hub.docker.com", "/v2/search/repositories/")]
    assert result.source == "hub.docker.com/v2/search/repositories"
    assert result.total == 10000
    assert [(r["name"], r["stars"], r["official"], r["pulls"]) for r in result.rows] == [
        ("ubuntu", 17303, True, 9419966493)]
    assert "404" in result.notes[0] and "v1 search failed" in result.notes[0]
    assert all(r.headers.get("Authorization") is None for r in sent)


def test_search_falls_back_to_v2_when_v1_cannot_be_reached():
    """A real connection failure (nothing listens on 127.0.0.1:9; vcrpy lets loopback through)."""
    with play("hub_search_v1_404_then_v2_2024.yaml", ignore_hosts=["127.0.0.1"]) as (_cass, sent):
        result = HubClient(index_url="http://127.0.0.1:9").search("ubuntu", limit=1)
    assert [r.host for r in sent] == ["hub.docker.com"]
    assert result.rows[0]["name"] == "ubuntu"
    assert "cannot reach" in result.notes[0]


def test_search_v2_follows_next():
    """The recorded page says next=…page=2…; the client asks exactly that URL (not recorded, so
    vcrpy refuses it: proof the request went out)."""
    with play("hub_search_v1_404_then_v2_2024.yaml") as (_cass, sent):
        with pytest.raises(CannotOverwriteExistingCassetteException) as info:
            HubClient().search_v2("ubuntu", limit=5, page_size=1)
    assert len(sent) == 1
    assert "page=2" in str(info.value) and "/v2/search/repositories/" in str(info.value)


def test_hub_tags_library_ubuntu():
    with play("hub_tags_library_ubuntu_2024.yaml") as (cass, sent):
        result = HubClient().tags("ubuntu", limit=1)
        assert cass.all_played
    (req,) = sent
    assert req.uri == "https://hub.docker.com/v2/repositories/library/ubuntu/tags/?page_size=1"
    assert req.headers.get("Authorization") is None
    assert result.total == 644 and result.notes == []
    assert result.source == "hub.docker.com/v2/repositories/library/ubuntu/tags"
    (row,) = result.rows
    assert row["repository"] == "library/ubuntu" and row["tag"] == "devel"
    assert row["platforms"] == UBUNTU_PLATFORMS
    assert [im["digest"][:14] for im in row["images"]] == [
        "sha256:164c016", "sha256:1c274f6", "sha256:f64ecfb", "sha256:cce4f13", "sha256:15b1b51", "sha256:891d888"]


def test_hub_tags_follow_next():
    with play("hub_tags_library_ubuntu_2024.yaml") as (_cass, sent):
        with pytest.raises(CannotOverwriteExistingCassetteException) as info:
            HubClient().tags("library/ubuntu", page_size=1)  # no limit: wants every page
    assert len(sent) == 1
    assert "https://hub.docker.com/v2/repositories/ubuntu/tags/?page=2&page_size=1" in str(info.value)


def test_hub_tags_2016_says_images_are_missing():
    with play("hub_tags_pavel_howdy_2016.yaml") as (cass, sent):
        result = HubClient(hub_url="https://registry.hub.docker.com").tags("pavel/howdy", page_size=None)
        assert cass.all_played
    assert sent[0].query == []  # no page_size sent
    (row,) = result.rows
    assert row["images_missing"] and row["platforms"] is None
    assert len(result.notes) == 1 and "latest" in result.notes[0] and "registry manifest" in result.notes[0]


def test_hub_tags_unknown_repository_is_not_found_without_network():
    with play("hub_tags_library_ubuntu_2024.yaml"):
        with pytest.raises(CannotOverwriteExistingCassetteException):
            HubClient().tags("library/does-not-exist", limit=1)


# --------------------------------------------------------------------------- through the Registry facade
def test_registry_search_on_docker_hub_is_a_search_frame():
    with play("hub_search_v1_404_then_v2_2024.yaml") as (cass, sent):
        reg = rx.Registry("docker.io", auth=("someone", "registry-password"))
        df = reg.search("ubuntu", limit=1)
        assert cass.all_played
    assert list(df.columns) == list(COLUMNS["search"])
    assert {c: str(t) for c, t in df.dtypes.items()} == COLUMNS["search"]
    assert df.loc[0, "name"] == "ubuntu" and df.loc[0, "pulls"] == 9419966493
    assert df.attrs["source"] == "hub.docker.com/v2/search/repositories"
    assert any("404" in n for n in df.attrs["notes"])
    # the registry's credentials never go to the Hub web API or the index
    assert all(r.headers.get("Authorization") is None for r in sent)


def test_registry_tags_details_on_docker_hub_come_from_hub_metadata():
    with play("hub_tags_library_ubuntu_2024.yaml") as (cass, _sent):
        reg = rx.Registry("docker.io", auth=False)
        df = reg.tags("ubuntu", details=True, limit=1)
        assert cass.all_played
    assert list(df.columns) == list(COLUMNS["tags_details"])
    assert df.loc[0, "tag"] == "devel"
    assert df.loc[0, "digest"] == "sha256:c62f1babc85f8756f395e6aabda682acd7c58a1b0c3bea250713cd0184a93efa"
    assert df.loc[0, "platforms"] == UBUNTU_PLATFORMS
    assert df.attrs["source"] == "hub.docker.com/v2/repositories/library/ubuntu/tags"


def test_hub_module_imports_only_the_protocol_core():
    """hub.py returns rows; building frames is the facade's job (imports flow one way)."""
    import ast

    import regexplore.protocol.hub as hub_module

    tree = ast.parse(Path(hub_module.__file__).read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] in ("pandas", "ipywidgets", "tqdm")}
    assert not {m for m in imported if m.lstrip(".") in ("registry", "frames")}
