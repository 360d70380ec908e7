"""Layer contents without temp files: decompress, list, merge, diff, read and safely extract.

Everything here works on a *stream of compressed bytes*: an iterable of ``bytes`` chunks (for example a
``requests`` response's ``iter_content``, hashed by the caller in the same pass) or a readable binary
file-like object. Nothing seeks and nothing is spooled to disk; memory stays constant in the size of the
layer (``tarfile`` stream mode, ``r|``).

Public surface::

    open_layer_stream(source, media_type=None, *, max_bytes=None) -> LayerStream   # decompressed tar
    iter_entries(source, layer=None, ...)                         -> Iterator[Entry]
    merge(layers_rows)                                            -> list[Entry]   # final filesystem
    diff(rows_a, rows_b, *, compare=DIFF_FIELDS)                  -> list[DiffRow]
    read_file(layers_newest_first, path, ...)                     -> bytes
    extract(layers_in_order, dest, ...)                           -> ExtractSummary

The modules: :mod:`.stream` (decompression, caps), :mod:`.tarinfo` (guarded ``tarfile`` reading),
:mod:`.listing` (the fast header scanner, :func:`iter_entries`), :mod:`.names` (paths, shown names,
whiteouts), :mod:`.resolve` (the one symlink resolver inside the image root), :mod:`.tree` (merge, diff,
read_file), :mod:`.extract` (the safe extractor), :mod:`.rows` (the row types).

Paths
-----
``Entry.path`` is the member name exactly as ``tar -t`` prints it (pax and GNU long names resolved), with a
leading ``./`` removed (repeatedly) and trailing ``/`` removed; the archive root ``./`` becomes ``"."``.
Nothing else is changed, so ``/abs`` or ``a/../b`` stay visible in a listing. :func:`merge`, :func:`diff` and
:func:`read_file` key on :func:`canonical_path` (empty and ``.`` components dropped, so no leading ``/``).

Errors: :class:`~regexplore.errors.UnsafeLayer` (escaping entries, device nodes, decompression bombs
(a sparse file's holes count as decompressed bytes), oversized tar metadata or sparse maps),
:class:`~regexplore.errors.UnsupportedMediaType` (not gzip/zstd/tar, encrypted layers),
:class:`~regexplore.errors.RegistryError` (a corrupt or truncated compressed stream).
This package never imports pandas, ipywidgets or tqdm.
"""

from __future__ import annotations

# Names with an ``as`` alias are reachable here as before the split, outside ``__all__`` (the internals
# tests and benchmarks use among them).
from .extract import extract
from .listing import _scan_tar as _scan_tar
from .listing import _TarBytes as _TarBytes
from .listing import iter_entries
from .names import _tar_path as _tar_path
from .names import canonical_path, raw_path, shown_name
from .rows import DiffRow, Entry, ExtractSummary
from .rows import EntryType as EntryType
from .stream import (
    DEFAULT_CAP,
    DEFAULT_FILE_CAP,
    MAX_FILE_BYTES_ENV,
    MAX_LAYER_BYTES_ENV,
    LayerSource,
    LayerStream,
    open_layer_stream,
)
from .stream import (
    GZIP_BACKEND as GZIP_BACKEND,
)
from .tarinfo import (
    MAX_METADATA_CHAIN as MAX_METADATA_CHAIN,
)
from .tarinfo import (
    MAX_METADATA_MEMBER as MAX_METADATA_MEMBER,
)
from .tarinfo import (
    MAX_SPARSE_ENTRIES as MAX_SPARSE_ENTRIES,
)
from .tarinfo import (
    _GuardedTarInfo as _GuardedTarInfo,
)
from .tarinfo import (
    _members as _members,
)
from .tarinfo import (
    _to_entry as _to_entry,
)
from .tree import DIFF_FIELDS, diff, merge, read_file

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_FILE_CAP",
    "DIFF_FIELDS",
    "MAX_FILE_BYTES_ENV",
    "MAX_LAYER_BYTES_ENV",
    "DiffRow",
    "Entry",
    "ExtractSummary",
    "LayerSource",
    "LayerStream",
    "canonical_path",
    "diff",
    "extract",
    "iter_entries",
    "merge",
    "open_layer_stream",
    "raw_path",
    "read_file",
    "shown_name",
]
