"""The v1 layer verifier's data: what a layer's bytes are checked against (v1 has no content digests).

The registry sends checksums with the image JSON (``X-Docker-Payload-Checksum`` or the older
``X-Docker-Checksum``: ``sha256(image JSON + "\\n" + layer)`` or a ``tarsum+sha256:``), the index
may list one for the image (same two forms). :class:`LayerChecks` hashes a transfer both ways as it
streams; :func:`check_layer` judges the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import DigestMismatch
from ...http.redact import shown
from .tarsum import PayloadChecksum, TarSum, TarSumError

if TYPE_CHECKING:
    from .results import ImageJSON

__all__ = ["LayerChecks", "check_layer", "wants_tarsum"]


def wants_tarsum(meta: ImageJSON, index_checksum: str | None) -> bool:
    """True when a tarsum must be computed: the index's checksum is one, or the registry sent only
    tarsums (no payload checksum, which can always be computed)."""
    kinds = {c.split(":", 1)[0] for c in meta.payload_checksums}
    return bool(index_checksum and index_checksum.startswith("tarsum")) or (
        any(k.startswith("tarsum") for k in kinds) and "sha256" not in kinds)


class LayerChecks:
    """The running hashes of one layer transfer: the payload checksum always, the tarsum when
    wanted (dropped when the layer turns out not to be a tar)."""

    def __init__(self, raw_json: bytes, want_tarsum: bool) -> None:
        self.raw_json = raw_json
        self.payload = PayloadChecksum(raw_json)
        self.tarsum: TarSum | None = TarSum(decompress=True) if want_tarsum else None

    def update(self, block: bytes) -> None:
        self.payload.update(block)
        if self.tarsum is not None:
            try:
                self.tarsum.update(block)
            except TarSumError:
                self.tarsum = None

    def tarsum_value(self) -> str | None:
        """The tarsum of what was hashed, or None when it cannot be computed."""
        if self.tarsum is None:
            return None
        try:
            return self.tarsum.sum(self.raw_json)
        except TarSumError:
            return None


def _header_check(meta: ImageJSON, checks: LayerChecks) -> tuple[str | None, str | None]:
    """Check the registry's checksums. Returns ``(header name verified against, note)``;
    raises :class:`DigestMismatch` when none of them matches what could be computed."""
    sums = meta.payload_checksums
    if not sums:
        return None, None
    payload = checks.payload.checksum
    name = meta.checksum_header or "X-Docker-Payload-Checksum"
    payloads = [c for c in sums if c.startswith("sha256:")]
    tarsums = [c for c in sums if c.startswith("tarsum")]
    if payload in payloads:
        return meta.checksum_headers.get(payload, name), None
    actual = checks.tarsum_value() if tarsums and checks.tarsum is not None else None
    if actual is not None and actual in tarsums:
        return meta.checksum_headers.get(actual, name), None
    if payloads or actual is not None:
        expected = payloads[0] if payloads else tarsums[0]
        source = meta.checksum_headers.get(expected, name)
        raise DigestMismatch(expected, payload if payloads else actual or payload,
                             what=f"v1 layer {meta.id[:12]} ({source})")
    return None, f"{name} {shown(sums[0], 40)} could not be checked"


def check_layer(meta: ImageJSON, checks: LayerChecks, index_checksum: str | None) -> tuple[list[str], list[str]]:
    """Judge a whole layer's hashes against the registry's checksums and the index's.

    Returns ``(verified against, notes)``: the names of what matched (a header name, ``"index
    checksum"``; empty when nothing could be checked, and a note then says so). Raises
    :class:`DigestMismatch` when a checksum that could be computed does not match."""
    verified_against: list[str] = []
    notes: list[str] = []
    header, note = _header_check(meta, checks)
    if header:
        verified_against.append(header)
    if note:
        notes.append(note)
    if index_checksum:
        if index_checksum.startswith("sha256:"):
            actual: str | None = checks.payload.checksum
        elif index_checksum.startswith("tarsum"):
            actual = checks.tarsum_value()
        else:
            actual = None
        if actual is None:
            notes.append(f"index checksum {index_checksum.split(':', 1)[0]} could not be computed for this layer")
        elif actual != index_checksum:
            raise DigestMismatch(index_checksum, actual, what=f"v1 layer {meta.id[:12]} (index checksum)")
        else:
            verified_against.append("index checksum")
    if not verified_against:
        notes.append("not verified: the registry sent no usable X-Docker-Payload-Checksum (or "
                     "X-Docker-Checksum) and the index no usable checksum (v1 has no content digests)")
    return verified_against, notes
