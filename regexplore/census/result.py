"""``Census``: a census dataset folder read back as pandas (or Dask) DataFrames; ``rx.open_census``."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

from .parts import TABLES

__all__ = ["Census", "open_census"]


class Census:
    """The census in folder ``path``: ``.repositories``, ``.tags``, ``.manifests``, ``.index_entries``,
    ``.layers``, ``.history``, ``.errors``, ``.files`` and ``.packages`` are pandas DataFrames (declared dtypes,
    empty tables included; ``manifests.index_digest`` derived from ``index_entries``), ``.dask`` maps each
    table to a ``dask.dataframe`` of its stored columns for data larger than memory, ``.counts`` gives rows per
    table without reading them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"Census({self.path!r})"

    def _parts(self, table: str) -> list[str]:
        folder = Path(self.path) / table
        if not folder.is_dir():
            return []  # a part still being written (or left by a killed writer) has a dot name: not a part
        return sorted(str(p) for p in folder.glob("*.parquet") if not p.name.startswith("."))

    @property
    def counts(self) -> dict[str, int]:
        """Table → rows (from the Parquet footers)."""
        import pyarrow.parquet as pq

        return {t: sum(pq.ParquetFile(p).metadata.num_rows for p in self._parts(t)) for t in TABLES}

    def table(self, name: str) -> Any:
        """Table ``name`` as a pandas DataFrame with the declared columns and dtypes (``census_<name>``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..model.frames import make_frame
        from .parts import schema_of

        if name not in TABLES:
            raise ValueError(f"no census table {name!r}; one of {list(TABLES)}")
        parts = self._parts(name)
        columns: dict[str, Any] = {}
        if parts:
            columns = _pandas_columns(pa.concat_tables(pq.read_table(p, schema=schema_of(name)) for p in parts))
        if name == "manifests":
            columns["index_digest"] = self._index_digests(columns.get("digest", []))
        return make_frame(f"census_{name}", columns=columns or None, attrs={"census": self.path})

    def _index_digests(self, digests: Any) -> list[str | None]:
        """For each of ``digests``: the smallest digest of the indexes naming it (``index_entries``), else
        None. A rule of the stored entries alone, so it does not depend on the order units ran in."""
        entries = self.table("index_entries")
        smallest = entries.groupby("digest")["index_digest"].min().to_dict() if len(entries) else {}
        return [smallest.get(d) for d in digests]

    def __getattr__(self, name: str) -> Any:
        if name in TABLES:
            return self.table(name)
        raise AttributeError(f"'Census' object has no attribute {name!r}")

    @property
    def dask(self) -> dict[str, Any]:
        """Table → ``dask.dataframe`` read lazily from the parts (tables with no part are left out)."""
        import dask.dataframe as dd

        return {t: dd.read_parquet(str(Path(self.path) / t)) for t in TABLES if self._parts(t)}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(t)}</td><td>{n:,}</td></tr>" for t, n in self.counts.items())
        return (f"<div class='regexplore-census'><b>Census</b> <code>{escape(self.path)}</code>"
                f"<table><tr><th>table</th><th>rows</th></tr>{rows}</table></div>")


def _pandas_columns(arrow: Any) -> dict[str, Any]:
    """Arrow columns as pandas Series with the nullable dtypes :func:`make_frame` keeps as they are."""
    import pandas as pd
    import pyarrow as pa

    nullable = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype(), pa.bool_(): pd.BooleanDtype()}
    df = arrow.to_pandas(types_mapper=nullable.get)
    return {c: df[c] for c in df.columns}


def open_census(path: str | os.PathLike[str]) -> Census:
    """The census in folder ``path`` (written by :func:`regexplore.census`). Raises ``FileNotFoundError``
    when ``path`` holds no census."""
    folder = Path(path)
    if not (folder / "_ledger").is_dir() and not any((folder / t).is_dir() for t in TABLES):
        raise FileNotFoundError(f"{path} holds no census (no _ledger or table folders)")
    return Census(folder)
