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
