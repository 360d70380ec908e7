"""Census units, part names and parts without a registry: deterministic names, hostile digests refused, fixed
schemas for empty tables, and half-written parts never read."""

from __future__ import annotations

import pandas as pd
import pytest

from regexplore.census.parts import TABLES, write_part
from regexplore.census.plan import TAGS_PER_UNIT, Unit, digest_name, pages_of
from regexplore.census.result import open_census
from regexplore.model.frames import COLUMNS


def test_unit_keys_are_stable_and_distinct():
    assert Unit("a/b").key == Unit("a/b").key
    assert len({Unit("a/b").key, Unit("a/b", 1).key, Unit("a/c").key, Unit("x.y_z/005-tool").key}) == 4
    assert "/" not in Unit("a/b/c").key


def test_pages_cut_after_the_first_unit():
    tags = [f"t{i}" for i in range(2 * TAGS_PER_UNIT + 1)]
    first, rest = pages_of("r", tags)
    assert first == tags[:TAGS_PER_UNIT]
    assert [u.page for u in rest] == [1, 2] and sum(len(u.tags) for u in rest) == TAGS_PER_UNIT + 1


@pytest.mark.parametrize("bad", ["../x", "sha256:../../etc", "sha256:", "sha256:ABC", "sha256:zz", "a/b:00"])
def test_hostile_digests_name_no_part(bad):
    with pytest.raises(ValueError):
        digest_name(bad)


def test_empty_and_written_tables_keep_the_declared_dtypes(tmp_path):
    write_part(tmp_path, "tags", "u0-x", [{"repository": "r", "tag": "t"}])
    (tmp_path / "tags" / ".tmp-cut.parquet").write_bytes(b"")  # a killed writer's leftover
    c = open_census(tmp_path)
    for name in TABLES:
        assert dict(c.table(name).dtypes.astype(str)) == COLUMNS[f"census_{name}"]
    assert c.counts["tags"] == 1 and c.tags.digest.isna().all()
    assert len(pd.read_parquet(tmp_path / "tags")) == 1


def test_open_census_refuses_a_folder_without_one(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_census(tmp_path)


def test_a_value_of_the_wrong_type_is_stored_as_null(tmp_path):
    """A hostile registry's ``"size": {}`` or ``"mediaType": 7`` must not stop the census: the value is null."""
    write_part(tmp_path, "layers", "sha256-aa", [
        {"manifest_digest": "sha256:aa", "index": 0, "digest": "sha256:bb", "size": {"x": 1}, "media_type": 7},
        {"manifest_digest": "sha256:aa", "index": True, "digest": ["x"], "size": 12, "media_type": "t"}])
    rows = open_census(tmp_path).layers.astype(object).where(lambda d: d.notna(), None).to_dict("records")
    assert rows == [
        {"manifest_digest": "sha256:aa", "index": 0, "digest": "sha256:bb", "size": None, "media_type": None},
        {"manifest_digest": "sha256:aa", "index": None, "digest": None, "size": 12, "media_type": "t"}]


def test_index_digest_is_the_smallest_index_naming_the_manifest(tmp_path):
    """Two indexes name one platform manifest; a third manifest is in none: whatever order the parts were
    written in, ``manifests.index_digest`` is the smaller index digest, else <NA>."""
    a, b, child, alone = (f"sha256:{c * 64}" for c in "fe0a")
    for index in (a, b):
        write_part(tmp_path, "index_entries", digest_name(index), [{"index_digest": index, "digest": child}])
    for digest in (a, b, child, alone):
        write_part(tmp_path, "manifests", digest_name(digest), [{"digest": digest}])
    m = open_census(tmp_path).manifests.set_index("digest").index_digest
    assert m[child] == b and pd.isna(m[alone]) and pd.isna(m[a])


def test_token_bucket_lets_rate_times_t_plus_a_tenth_through():
    """8 threads taking 120 tokens at 200/s: the burst is 20 tokens, so the last waits at least 0.5 s."""
    import threading
    import time

    from regexplore.census.budget import TokenBucket

    bucket = TokenBucket(200)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.take() for _ in range(15)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bucket.requests == 120 and bucket.burst == 20
    assert time.monotonic() - start >= (120 - 20) / 200
    with pytest.raises(ValueError):
        bucket.set_rate(0)
