"""The one blob-digest helper of the tests: ``sha256_digest(data) -> "sha256:<hex>"``."""

from __future__ import annotations

import hashlib


def sha256_digest(data: bytes) -> str:
    """Return ``"sha256:<hex>"`` of ``data`` (the OCI digest of a blob or manifest)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
