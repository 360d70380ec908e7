"""Parquet parts: one file per unit or digest and table, written atomically with fixed schemas.

The schemas come from :data:`regexplore.model.frames.COLUMNS` (the ``census_*`` tables), so every part of a
table has the same Arrow schema, empty or not, and pandas reads the declared dtypes back. A part is written
to a temporary name in its folder and renamed into place: a reader never sees half a file, and two writers of
the same deterministic name leave one whole file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..model.frames import BOOL, COLUMNS, FLOAT, INT, STR, TIME, make_frame

__all__ = ["TABLES", "atomic_write", "has_part", "remove_part", "schema_of", "write_part"]

#: the census' tables (folder names) in the order a summary shows them
TABLES = ("repositories", "tags", "manifests", "layers", "history", "errors", "files")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def schema_of(table: str) -> Any:
    """The Arrow schema of census table ``table`` (from ``COLUMNS["census_<table>"]``)."""
    import pyarrow as pa

    types = {STR: pa.string(), INT: pa.int64(), BOOL: pa.bool_(), TIME: pa.timestamp("ns", tz="UTC"),
             FLOAT: pa.float64()}
    return pa.schema([(col, types[dtype]) for col, dtype in COLUMNS[f"census_{table}"].items()])


def _part(out: Path, table: str, name: str) -> Path:
    return out / table / f"{name}.parquet"


def has_part(out: Path, table: str, name: str) -> bool:
    """True if the part ``name`` of ``table`` is written."""
    return _part(out, table, name).exists()


def remove_part(out: Path, table: str, name: str) -> None:
    """Remove the part ``name`` of ``table`` if there is one (a unit's old errors, once it succeeds)."""
    _part(out, table, name).unlink(missing_ok=True)


def write_part(out: Path, table: str, name: str, rows: Iterable[Mapping[str, Any]] = (), *,
               columns: Mapping[str, Any] | None = None) -> None:
    """Write ``rows`` (or ``columns``) as the part ``name`` of ``table``, atomically, in the table's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = make_frame(f"census_{table}", rows, columns=columns)
    arrow = pa.Table.from_pandas(df, schema=schema_of(table), preserve_index=False)
    path = _part(out, table, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
