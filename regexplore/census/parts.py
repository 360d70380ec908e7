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

from ..model.frames import BOOL, COLUMNS, FLOAT, INT, OBJ, STR, TIME, make_frame, to_time

__all__ = ["DERIVED", "TABLES", "atomic_write", "has_part", "remove_part", "schema_of", "write_part"]

#: the census' tables (folder names) in the order a summary shows them
TABLES = ("repositories", "tags", "manifests", "index_entries", "layers", "history", "errors", "files", "packages")

#: columns of a table's frame that are not stored but derived when read (:class:`~regexplore.census.Census`):
#: a part holds only what its own digest or unit determines, so parts never depend on the order units ran in
DERIVED = {"manifests": ("index_digest",)}


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
    """The Arrow schema of census table ``table``'s parts: ``COLUMNS["census_<table>"]`` less its
    :data:`DERIVED` columns (an object column is a list of strings: ``packages.licenses``)."""
    import pyarrow as pa

    types = {STR: pa.string(), INT: pa.int64(), BOOL: pa.bool_(), TIME: pa.timestamp("ns", tz="UTC"),
             FLOAT: pa.float64(), OBJ: pa.list_(pa.string())}
    derived = DERIVED.get(table, ())
    return pa.schema([(col, types[dtype]) for col, dtype in COLUMNS[f"census_{table}"].items() if col not in derived])


def _part(out: Path, table: str, name: str) -> Path:
    return out / table / f"{name}.parquet"


def has_part(out: Path, table: str, name: str) -> bool:
    """True if the part ``name`` of ``table`` is written."""
    return _part(out, table, name).exists()


def remove_part(out: Path, table: str, name: str) -> None:
    """Remove the part ``name`` of ``table`` if there is one (a unit's old errors, once it succeeds)."""
    _part(out, table, name).unlink(missing_ok=True)


def _arrow(table: str, rows: Iterable[Mapping[str, Any]]) -> Any:
    """``rows`` as an Arrow table in ``table``'s schema, built column by column without pandas (a census
    writes thousands of small parts). A value of the wrong type (a hostile registry's ``"size": {}``)
    becomes null; times are parsed as :func:`~regexplore.model.frames.to_time` parses them."""
    import pyarrow as pa

    rows = list(rows)
    spec = COLUMNS[f"census_{table}"]
    schema = schema_of(table)
    arrays = []
    for f in schema:
        values = [r.get(f.name) for r in rows]
        dtype = spec[f.name]
        if dtype == TIME:
            arrays.append(pa.array(to_time(values), type=f.type))
            continue
        ok = _PYTHON[dtype]
        arrays.append(pa.array([v if isinstance(v, ok) and not (dtype == INT and isinstance(v, bool)) else None
                                for v in values], type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


_PYTHON: dict[str, Any] = {STR: str, INT: int, BOOL: bool, FLOAT: (float, int), OBJ: list}


def write_part(out: Path, table: str, name: str, rows: Iterable[Mapping[str, Any]] = (), *,
               columns: Mapping[str, Any] | None = None) -> None:
    """Write ``rows`` (or the pandas ``columns`` of a facade frame) as the part ``name`` of ``table``,
    atomically, in the table's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if columns is None:
        arrow = _arrow(table, rows)
    else:
        df = make_frame(f"census_{table}", columns=columns)
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
