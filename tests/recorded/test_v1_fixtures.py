"""The v1 parsers on real recorded v1 data (../shared/fixtures/real/v1_*; provenance in its README)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from v1server import V1Image, V1Server

from regexplore.protocol.hub import parse_v1_search
from regexplore.protocol.v1.client import V1Client
from regexplore.protocol.v1.parse import history_row, parse_repository_images, parse_tags

E0 = "e0acc43660ac918e0cd7f21f1020ee3078fec7b2c14006603bbc21499799e7d5"
OE = "0e03f25112cd513ade7c194109217b9381835ac2298bd0ffb61d28fbe47081a8"
D8 = "8dbd9e392a964056420e5d58ca5cc376ef18e2de93b5cc90e868a1bbc8318c1c"


@pytest.fixture(scope="module")
def real(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "real"


def _redis_json(real: Path) -> dict[str, bytes]:
    return {i: (real / f"v1_image_json_dynport_redis_{i[:8]}.json").read_bytes().strip() for i in (E0, OE, D8)}


def test_dynport_redis_chain_history_oldest_first(real: Path) -> None:
    docs = {i: json.loads(raw) for i, raw in _redis_json(real).items()}
    # the ancestry of e0acc436 as a registry serves it: self first, base last
    ancestry, cur = [], E0
    while cur:
        ancestry.append(cur)
        cur = docs[cur].get("parent")
    assert ancestry == [E0, OE, D8]
    rows = [history_row(step, docs[i]) for step, i in enumerate(reversed(ancestry))]
    assert [r["id"] for r in rows] == [D8, OE, E0] and [r["step"] for r in rows] == [0, 1, 2]
    assert [r["parent"] for r in rows] == [None, D8, OE]
    assert [r["size"] for r in rows] == [131502179, 144519634, 34795256]  # the JSON's capital-S Size
    assert rows[0]["created_by"] == "" and rows[0]["comment"] == "Imported from -"  # Cmd null: an import
    assert rows[1]["created_by"].startswith("/bin/sh -c sed 's/main$/main universe/' -i /etc/apt/sources.list")
    assert rows[2]["created_by"] == "/bin/sh -c apt-get install -y redis-server"
    # "2013-04-11T14:13:15.57812-07:00": an offset, 5 fractional digits
    assert rows[0]["created"] == datetime(2013, 4, 11, 21, 13, 15, 578120, tzinfo=UTC)
    # "2013-07-14T10:15:02.993095073Z": 9 fractional digits (nanoseconds) cut to microseconds
    assert rows[2]["created"] == datetime(2013, 7, 14, 10, 15, 2, 993095, tzinfo=UTC)


def test_dynport_redis_chain_through_the_protocol(real: Path) -> None:
    """The real image JSON bytes served by a v1 registry: ancestry, JSON and size headers."""
    raw = _redis_json(real)
    layers = {D8: b"base layer" * 10, OE: b"upgrade" * 7, E0: b"redis" * 3}
    with V1Server(standalone=True) as srv:
        srv.preload("dynport/redis", [V1Image(i, raw[i], layers[i]) for i in (D8, OE, E0)], tags={"latest": E0})
        client = V1Client.connect(srv.index_url, auth=False)
        rows = client.history("dynport/redis", "latest")
        assert [r["id"] for r in rows] == [D8, OE, E0]
        # X-Docker-Size (the stored layer's bytes) wins over the JSON's Size when the registry sends it
        assert [r["size"] for r in rows] == [len(layers[i]) for i in (D8, OE, E0)]
        meta = client.image_json(OE, repo="dynport/redis")
        assert meta.raw == raw[OE] and meta.doc["docker_version"] == "0.4.8"
        client.close()


def test_repository_images_with_tag_and_sha256_checksums(real: Path) -> None:
    images = parse_repository_images(json.loads((real / "v1_repository_images_dynport_redis.json").read_text()))
    assert [i["id"] for i in images] == [D8, OE, E0]
    assert all(i["tag"] == "latest" for i in images)  # the 2013 capital-T "Tag"
    assert images[0]["checksum"] == "sha256:65a3ba9ff46cd21324807eb27ccf452c6813049a28d7b0cf986db1d1e8cd08e5"


def test_repository_images_with_empty_checksums_and_the_short_tag_layer(real: Path) -> None:
    images = parse_repository_images(
        json.loads((real / "v1_repository_images_balabit_syslog-ng_2015.json").read_text()))
    assert len(images) == 20
    assert all(i["checksum"] is None and i["tag"] is None for i in images)  # "checksum": "" everywhere
    tags = parse_tags(json.loads((real / "v1_tags_list_form_balabit_syslog-ng_2015.json").read_text()))
    assert tags == {"build": "8bdc8703"}
    # the list form's 8-hex "layer" names exactly one image of the index's list
    assert [i["id"] for i in images if i["id"].startswith(tags["build"])] == [
        "8bdc8703a0096252bdf97dfc151667062b9e7c2098884247e8fce97ea1824d67"]


@pytest.mark.parametrize("name,count,first", [
    ("v1_tags_list_form_library_redis_2014.json", 16, ("latest", "ef16032a")),
    ("v1_tags_list_form_index_maxwell2022_2016.json", 5, ("0514e84fe1", "97dde7ca")),
])
def test_tags_list_form_files(real: Path, name: str, count: int, first: tuple[str, str]) -> None:
    tags = parse_tags(json.loads((real / name).read_text()))
    assert len(tags) == count and list(tags.items())[0] == first
    assert all(len(v) == 8 and int(v, 16) >= 0 for v in tags.values())


def test_redis_2014_list_form_shares_layers_between_tags(real: Path) -> None:
    tags = parse_tags(json.loads((real / "v1_tags_list_form_library_redis_2014.json").read_text()))
    assert tags["latest"] == tags["2.8"] == tags["2.8.17"] == "ef16032a"
    assert tags["2.6"] == tags["2.6.17"] == "51345c84"


def test_search_2015_page_as_string(real: Path) -> None:
    rows, meta = parse_v1_search(json.loads((real / "v1_search_talien_crane_2015.json").read_text()))
    assert rows == [{"name": "talien/crane", "description": "", "stars": 0, "official": False,
                     "automated": True, "pulls": None}]
    assert meta == {"total": 1, "page": 1, "num_pages": 1, "page_size": 25}  # "page": "1" read as 1


def test_search_2022_excerpt_what_can_honestly_be_read(real: Path) -> None:
    text = (real / "v1_search_index_docker_io_mysql_2022_EXCERPT.txt").read_text()
    with pytest.raises(ValueError):
        json.loads(text)  # cut mid-object by the issue excerpt: not a whole answer
    # Only the complete part: the header fields and the first three results (closed, not invented).
    cut = text.rindex("},", 0, text.index('"name": "percona"')) + 1
    rows, meta = parse_v1_search(json.loads(text[:cut] + "]}"))
    assert meta == {"total": 30925, "page": 1, "num_pages": 1237, "page_size": 25}  # page as an int
    assert [r["name"] for r in rows] == ["mysql", "mariadb", "phpmyadmin"]
    assert rows[0]["pulls"] == 3282532963 and rows[0]["stars"] == 0  # pull_count; the Hub's 0-star bug
    assert all(r["official"] is True and r["automated"] is False for r in rows)


def test_scratch_and_older_image_json(real: Path) -> None:
    scratch = json.loads((real / "v1_image_json_511136ea_scratch.json").read_text())
    row = history_row(0, scratch)
    assert row["parent"] is None and row["created_by"] == "" and row["size"] == 0
    assert row["created"] == datetime(2013, 6, 13, 21, 3, 50, 821769, tzinfo=UTC)
    doc = json.loads((real / "v1_image_json_46af0962.json").read_text())
    row = history_row(5, doc, size_header=-1)  # X-Docker-Size -1 means unknown: the JSON's Size counts
    assert row["size"] == 3425 and row["step"] == 5
    assert row["created_by"] == "/bin/sh -c sed -ri 's/^(%wheel.*)(ALL)$/\\1NOPASSWD: \\2/' /etc/sudoers"
    assert row["parent"] == "def3f9165934325dfd027c86530b2ea49bb57a0963eb1336b3a0415ff6fd56de"
