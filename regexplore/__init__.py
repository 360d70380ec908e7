"""regexplore: look inside container image registries from a notebook.

>>> import regexplore as rx
>>> reg = rx.Registry("127.0.0.1:5000")            # doctest: +SKIP
>>> reg.tags("demo/busybox", details=True)         # doctest: +SKIP

The public surface is pinned in ``__all__``; modules with a leading role (``transport``,
``auth``, ``v2``, ``oci``, ``frames``) are importable for raw protocol work.
"""

from ._version import __version__  # noqa: E402
from .errors import (  # noqa: E402
    AlreadyExists,
    DeadlineExceeded,
    Denied,
    DigestMismatch,
    InsecureCredentials,
    InvalidReference,
    NotFound,
    RegistryError,
    ResponseTooLarge,
    TooManyRequests,
    Unauthorized,
    UnsafeLayer,
    Unsupported,
    UnsupportedMediaType,
)
from .reference import ImageRef, parse_reference  # noqa: E402
from .registry import Registry  # noqa: E402

__all__ = [
    "__version__",
    "Registry",
    "ImageRef",
    "parse_reference",
    "RegistryError",
    "NotFound",
    "Unauthorized",
    "Denied",
    "TooManyRequests",
    "DigestMismatch",
    "Unsupported",
    "UnsupportedMediaType",
    "ResponseTooLarge",
    "AlreadyExists",
    "InsecureCredentials",
    "UnsafeLayer",
    "DeadlineExceeded",
    "InvalidReference",
    "sandbox",
    "browse",
    "cache_info",
    "clear_cache",
    "raw_path",
    "census",
    "open_census",
    "to_cyclonedx",
]


def cache_info():
    """What the local blob cache holds (``REGEXPLORE_CACHE``, default the user's cache folder):
    a DataFrame[digest, size, path, modified]."""
    from .content.blobs import cache_info as rows
    from .model.frames import make_frame

    return make_frame("cache", rows())


def clear_cache(digests=None) -> int:
    """Remove cached blobs (all, or only ``digests``); returns how many were removed."""
    from .content.blobs import clear_cache as clear

    return clear(digests=digests)


def raw_path(shown: str) -> bytes:
    r"""The exact bytes of a file name as a ``files`` / ``diff`` table shows it: bytes that are not UTF-8
    are shown as ``\xNN`` (``raw_path(r"caf\xe9") == b"caf\xe9"``); ``reg.read_file`` takes them."""
    from .content.layers import raw_path as unescape

    return unescape(shown)


def __getattr__(name: str):  # lazy: the sandbox, the census, the widgets and the SBOM writer cost nothing until used
    import importlib

    if name == "sandbox":
        return importlib.import_module(".sandbox", __name__)
    if name in ("census", "open_census"):  # pyarrow and dask only when a census is asked for
        return getattr(importlib.import_module(".census", __name__), name)
    if name == "browse":
        return importlib.import_module(".jupyter", __name__).browse
    if name == "to_cyclonedx":
        return importlib.import_module(".content.inside.cyclonedx", __name__).to_cyclonedx
    raise AttributeError(f"module 'regexplore' has no attribute {name!r}")
