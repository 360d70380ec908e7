"""DataFrames with fixed, documented columns and dtypes, even when empty.

Every table regexplore returns is declared once here (``COLUMNS``) and built by
:func:`make_frame`; the README's column table is generated from the same declarations and a test
checks each frame's dtypes. Dtypes are pandas' nullable ones, so a missing size is ``<NA>``,
never a wrong 0 or a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


__all__ = ["COLUMNS", "make_frame", "columns_markdown", "to_time"]

STR = "string"
INT = "Int64"
BOOL = "boolean"
TIME = "datetime64[ns, UTC]"
FLOAT = "float64"
OBJ = "object"

#: table name → {column: dtype}; the order is the column order
COLUMNS: dict[str, dict[str, str]] = {
    "catalog": {"repository": STR},
    "tags": {"repository": STR, "tag": STR},
    "tags_details": {
        "repository": STR, "tag": STR, "digest": STR, "media_type": STR, "size": INT, "created": TIME,
        "os": STR, "architecture": STR, "platforms": OBJ,
    },
    "platforms": {
        "os": STR, "architecture": STR, "variant": STR, "os_version": STR, "digest": STR,
        "media_type": STR, "size": INT, "platform": STR, "attestation": BOOL,
    },
    "history": {
        "step": INT, "created": TIME, "created_by": STR, "empty_layer": BOOL, "size": INT,
        "layer_digest": STR, "diff_id": STR, "comment": STR,
    },
    "history_v1": {
        "step": INT, "created": TIME, "created_by": STR, "empty_layer": BOOL, "size": INT,
        "layer_digest": STR, "diff_id": STR, "comment": STR, "id": STR, "parent": STR,
    },
    "layers": {
        "index": INT, "digest": STR, "media_type": STR, "compression": STR, "size": INT,
        "diff_id": STR, "created_by": STR,
    },
    "trace": {
        "time": TIME, "method": STR, "url": STR, "status": INT, "bytes": INT, "elapsed_ms": FLOAT,
        "note": STR,
    },
    "search": {
        "name": STR, "description": STR, "stars": INT, "official": BOOL, "automated": BOOL, "pulls": INT,
    },
    "files": {
        "layer": STR, "path": STR, "type": STR, "size": INT, "mode": INT, "uid": INT, "gid": INT,
        "mtime": TIME, "linkname": STR, "whiteout": STR,
    },
    "diff": {"path": STR, "change": STR, "size_a": INT, "size_b": INT},
    "cache": {"digest": STR, "size": INT, "path": STR, "modified": TIME},
    "packages": {
        "name": STR, "version": STR, "type": STR, "purl": STR, "arch": STR, "source": STR, "licenses": OBJ,
        "layer": STR, "path": STR,
    },
    "wasted": {"path": STR, "count": INT, "size": INT},
    "referrers": {
        "subject": STR, "digest": STR, "media_type": STR, "artifact_type": STR, "size": INT, "annotations": OBJ,
        "created": TIME, "source": STR, "depth": INT,
    },
    "attestations": {
        "platform": STR, "digest": STR, "predicate_type": STR, "layer_digest": STR, "size": INT,
        "image_digest": STR, "media_type": STR,
    },
    "signatures": {
        "digest": STR, "verified": BOOL, "docker_reference": STR, "key": STR, "error": STR, "layer_digest": STR,
        "source": STR,
    },
    "census_repositories": {"repository": STR, "tags": INT},
    "census_tags": {"repository": STR, "tag": STR, "digest": STR, "media_type": STR},
    "census_manifests": {
        "digest": STR, "media_type": STR, "size": INT, "created": TIME, "os": STR, "architecture": STR,
        "variant": STR, "config_digest": STR, "index_digest": STR, "layers": INT, "layers_size": INT,
    },
    "census_index_entries": {
        "index_digest": STR, "digest": STR, "media_type": STR, "size": INT, "os": STR, "architecture": STR,
        "variant": STR, "platform": STR, "attestation": BOOL,
    },
    "census_layers": {"manifest_digest": STR, "index": INT, "digest": STR, "size": INT, "media_type": STR},
    "census_history": {
        "manifest_digest": STR, "step": INT, "created": TIME, "created_by": STR, "empty_layer": BOOL, "size": INT,
        "layer_digest": STR, "diff_id": STR, "comment": STR,
    },
    "census_errors": {"unit": STR, "repository": STR, "tag": STR, "error": STR, "status": INT, "message": STR},
    "census_files": {
        "layer": STR, "path": STR, "type": STR, "size": INT, "mode": INT, "uid": INT, "gid": INT,
        "mtime": TIME, "linkname": STR, "whiteout": STR,
    },
    "census_packages": {
        "manifest_digest": STR, "name": STR, "version": STR, "type": STR, "purl": STR, "arch": STR, "source": STR,
        "licenses": OBJ, "layer": STR, "path": STR,
    },
}

#: what each column means, for the README table
DESCRIPTIONS: dict[str, str] = {
    "catalog": "every repository of `/v2/_catalog`, all pages",
    "tags": "every tag of a repository, all pages",
    "tags_details": "`tags(repo, details=True)`: per tag the manifest digest and type, size (config + layers), "
                    "created, os/architecture (default platform for an index) and all platforms",
    "platforms": "entries of an index / manifest list; `attestation` flags unknown/unknown entries",
    "history": "docker-history-like steps, oldest first; `size` is the compressed layer size, 0 for empty "
               "steps, <NA> where unknown",
    "history_v1": "`history` of a v1 registry (from the ancestry): the `history` columns, oldest first, plus "
                  "the v1 image `id` and its `parent`; `size` is `X-Docker-Size` (stored layer bytes), else the "
                  "JSON's `Size`; v1 has no digests",
    "layers": "layers in manifest order",
    "trace": "every HTTP exchange, redacted",
    "search": "search results",
    "files": "entries of layer tars",
    "diff": "paths that differ between two images",
    "cache": "what the local blob cache holds",
    "packages": "`packages(ref)`: the final filesystem's packages with syft's type names and purls; `layer` is "
                "the digest of the layer that introduced each, `path` the file it was read from; "
                "`attrs['skipped']` lists files that could not be read, with the reason. `sbom(ref)` fills "
                "name, version, type, purl, arch, source and licenses from an attached SBOM",
    "census_repositories": "`rx.census(...).repositories`: one row per repository, with its tag count",
    "census_tags": "`census.tags`: every tag as the registry lists it, with the digest it names",
    "census_manifests": "`census.manifests`: one row per manifest digest (an index is a row, and so is each "
                        "platform manifest); `index_digest` is derived when read: the smallest digest of the "
                        "indexes naming the manifest (`index_entries`), else <NA>, whatever order the units ran "
                        "in; `layers`/`layers_size`: count and compressed bytes",
    "census_index_entries": "`census.index_entries`: every entry of every index (the `platforms` columns), with the "
                            "`index_digest` naming it; a manifest in several indexes has a row for each",
    "census_layers": "`census.layers`: the layers of each image manifest, in manifest order",
    "census_history": "`census.history`: each image manifest's history steps (the `history` columns)",
    "census_errors": "`census.errors`: one row per unit (or tag) that failed: the error class, HTTP status, message",
    "census_files": "`census.files` (`files=True`): the entries of each layer digest's tar, once per digest",
    "census_packages": "`census.packages` (`packages=True`): `reg.packages(repo@digest)` of each image manifest "
                       "(every platform of an index), once per manifest digest",
    "wasted": "`efficiency(ref).files`: paths written in more than one layer (or written and deleted), dive's "
              "`count` and total `size` of all copies, biggest first",
    "referrers": "`referrers(ref)`: manifests whose `subject` is `ref` (the `subject` column), from the referrers "
                 "API (`source` `api`), else the `sha256-<hex>` tag (`tag-schema`), plus cosign's `.sig`/`.att`/"
                 "`.sbom` tags (`cosign-tag`); `artifact_type` is the manifest's `artifactType`, else its config's "
                 "media type; `created` from the `org.opencontainers.image.created` annotation; `depth` 1 = direct, "
                 "deeper with `recursive=True`",
    "attestations": "`attestations(ref)`: one row per in-toto layer of each buildkit attestation manifest of an "
                    "index; `platform` and `image_digest` name the image attested, `digest` the attestation "
                    "manifest, `size` the in-toto layer's",
    "signatures": "`verify(ref, key)`: one row per cosign signature of the `sha256-<hex>.sig` tag (`source` "
                  "`cosign .sig`) and of OCI 1.1 referrers of artifact type "
                  "`application/vnd.dev.cosign.artifact.sig.v1+json` (`referrer`); `digest` is the "
                  "signature manifest's, `docker_reference` the name the payload claims, `error` why a "
                  "signature is not verified (keyless ones are found, not verified)",
}


def to_time(values: list[Any]) -> pd.Series:
    """``values`` (ISO strings, datetimes, None) as a UTC time Series; what does not parse, or lies outside
    pandas' nanosecond range, becomes NaT."""
    import pandas as pd

    s = pd.Series(values, dtype=OBJ)
    if s.empty:
        return pd.Series([], dtype=TIME)
    out = pd.to_datetime(s, utc=True, errors="coerce", format="mixed")
    if out.dtype != TIME:
        # datetime objects come in at microsecond resolution; nanoseconds only reach 1677..2262, so a
        # config's year 1600 or 9999 becomes <NA> instead of failing the whole table
        lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
        out = out.where((out >= lo) & (out <= hi)).astype(TIME)
    return out


def make_frame(kind: str, rows: Iterable[Mapping[str, Any]] = (), *, columns: Mapping[str, Sequence[Any]] | None = None,
               attrs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A DataFrame of table ``kind`` from row dicts: exactly the declared columns, in order, with
    the declared dtypes (missing keys become <NA>). ``attrs`` go into ``df.attrs``.

    Or column-wise, faster for big tables: ``columns`` maps a column to its values (one per row; a
    missing column is all <NA>); a ``pd.Series`` that already has the declared dtype is used as is.
    """
    import pandas as pd

    spec = COLUMNS[kind]
    if columns is None:
        rows = list(rows)
        values_of = {col: [r.get(col) for r in rows] for col in spec}
    else:
        n = len(next(iter(columns.values()), ()))
        values_of = {col: columns[col] if col in columns else [None] * n for col in spec}
    data: dict[str, pd.Series] = {}
    for col, dtype in spec.items():
        values = values_of[col]
        if isinstance(values, pd.Series) and values.dtype == dtype:
            data[col] = values.reset_index(drop=True)
        elif dtype == TIME:
            data[col] = to_time(list(values))
        elif dtype == OBJ:
            data[col] = pd.Series(list(values), dtype=OBJ)
        elif dtype == INT:
            data[col] = pd.Series([None if v is None or v == "" else int(v) for v in values], dtype=OBJ).astype(INT)
        elif dtype == BOOL:
            data[col] = pd.Series([None if v is None else bool(v) for v in values], dtype=OBJ).astype(BOOL)
        else:
            data[col] = pd.Series([None if v is None else _text(v) for v in values], dtype=OBJ).astype(dtype)
    df = pd.DataFrame(data, columns=list(spec))
    if attrs:
        df.attrs.update(attrs)
    return df


def _text(value: Any) -> Any:
    r"""``value`` as text any string column can hold: a string with lone surrogates (JSON may carry
    ``"\udc80"``; pyarrow-backed columns refuse it) has them written as ``\udc80`` escapes."""
    if not isinstance(value, str) or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def columns_markdown() -> str:
    """The README's table of frames and columns (name: dtype)."""
    lines = ["| table | columns (dtype) | what |", "|---|---|---|"]
    for kind, spec in COLUMNS.items():
        cols = ", ".join(f"`{c}` ({d})" for c, d in spec.items())
        lines.append(f"| {kind} | {cols} | {DESCRIPTIONS.get(kind, '')} |")
    return "\n".join(lines)
