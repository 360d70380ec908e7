"""What one call may read of one image's layers: the decompression budget, and the replay of a layer listed
more than once (fetched once, verified, read again from a temporary file)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ResponseTooLarge
from ..http.transport import MiB
from ..protocol.v2 import cap_from_env

__all__ = ["MAX_IMAGE_BYTES_ENV", "DEFAULT_MAX_IMAGE_BYTES", "ImageBudget", "Replay"]

#: Environment variable capping the decompressed bytes of one image's layers in one call.
MAX_IMAGE_BYTES_ENV = "REGEXPLORE_MAX_IMAGE_BYTES"
DEFAULT_MAX_IMAGE_BYTES = 32 * 1024**3


class ImageBudget:
    """The decompressed bytes one call may read for one image's layers: every listed layer counts, whether
    it is read or its listing reused, up to ``$REGEXPLORE_MAX_IMAGE_BYTES`` (default 32 GiB). Thread-safe."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref
        self.cap = cap_from_env(MAX_IMAGE_BYTES_ENV, DEFAULT_MAX_IMAGE_BYTES)
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, n: int) -> None:
        """Count ``n`` more bytes; raises :class:`ResponseTooLarge` once past the cap (and at every charge after)."""
        with self._lock:
            self.used += n
            over = self.used > self.cap
        if over:
            raise ResponseTooLarge(f"the layers of {self.ref} decompress to more than {self.cap} bytes in one call "
                                   f"(a layer listed again counts again); raise {MAX_IMAGE_BYTES_ENV} to read them")


class Replay:
    """A layer listed more than once in one call: its compressed bytes go to a temporary file as they stream,
    and once a stream of them was read to its end (so its digest was verified) later readers get the file
    instead of asking the registry again. Close it when the call is done."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="regexplore-layer-")  # noqa: SIM115 (closed by the call)
        self.complete = False

    def chunks(self, fetch: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
        """The layer's bytes: from the file when complete, else from ``fetch()``, recorded."""
        if self.complete:
            self.file.seek(0)
            yield from iter(lambda: self.file.read(MiB), b"")
            return
        self.file.seek(0)
        self.file.truncate()
        for block in fetch():
            self.file.write(block)
            yield block
        self.complete = True
