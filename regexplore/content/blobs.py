"""The public face of blob transfers: one import for what :class:`~regexplore.Registry` and users call.

Downloads go through the one verified, resumable fetch engine (:mod:`regexplore.content.fetch`;
v2 blobs: :mod:`~regexplore.content.v2blobs`, v1 layers: :mod:`~regexplore.content.v1layers`),
planned by :mod:`~regexplore.content.download`; the cache is :mod:`~regexplore.content.cache`;
layouts :mod:`~regexplore.content.layout`; uploads :mod:`~regexplore.content.push`; streaming
:mod:`~regexplore.content.stream`. Progress goes to a callback (:mod:`regexplore.content.progress`);
none of these import pandas or tqdm.
"""

from __future__ import annotations

from .cache import blob_filename, cache_dir, cache_info, clear_cache
from .download import download
from .layout import save
from .progress import ProgressEvent
from .push import push
from .stream import open_verified_stream

__all__ = ["ProgressEvent", "blob_filename", "cache_dir", "cache_info", "clear_cache", "download",
           "open_verified_stream", "push", "save"]
