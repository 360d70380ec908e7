"""What the v1 client returns: small dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ImageJSON", "LayerDownload", "PushResult", "RepositoryData", "V1ImageLike"]


@dataclass
class RepositoryData:
    """The index's answer to ``GET /v1/repositories/<ns>/<repo>/images`` (or a push start).

    ``images``: ``[{id, checksum, tag}]`` (checksum None when empty); ``endpoints``: registry
    base URLs in the index's order; ``token_count``: how many ``X-Docker-Token`` values came
    (the tokens themselves stay in :class:`V1Auth`, never in a repr).
    """

    repository: str
    images: list[dict[str, str | None]]
    endpoints: list[str]
    token_count: int = 0


@dataclass
class ImageJSON:
    """``GET /v1/images/<id>/json``: ``raw`` (bytes as served; they enter the payload checksum),
    ``doc`` (parsed), ``size`` (``X-Docker-Size``, None when absent or -1), ``payload_checksums``
    (every value of every header of :data:`~regexplore.protocol.v1.parse.CHECKSUM_HEADERS` present:
    ``sha256:`` payload checksums or tarsums), ``endpoint`` (the registry that answered),
    ``checksum_header`` (the first such header's name), ``checksum_headers`` (``{value: header name}``)."""

    id: str
    raw: bytes
    doc: dict[str, Any]
    size: int | None
    payload_checksums: list[str]
    endpoint: str
    checksum_header: str | None = None
    checksum_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LayerDownload:
    """One downloaded v1 layer.

    ``verified`` is True only when the bytes matched a checksum the registry or index gave
    (``verified_against`` names it: ``"X-Docker-Payload-Checksum"`` or whichever header carried it,
    ``"index checksum"``);
    with nothing to check against it is False and ``note`` says so. ``checksum`` is the payload
    checksum we computed (``sha256:…`` of JSON + ``\\n`` + layer); ``resumes`` counts ranged
    resumes after dropped connections, ``restarts`` transfers restarted from byte 0.
    """

    image_id: str
    path: Path
    size: int
    verified: bool
    checksum: str
    verified_against: str | None = None
    note: str = ""
    resumes: int = 0
    restarts: int = 0


@dataclass
class PushResult:
    """What :meth:`V1Client.push` did: ``pushed`` image ids, ``skipped`` (the registry already
    had them), ``tags`` set, ``checksums`` ``{id: tarsum or payload checksum}`` sent to the
    index, ``endpoints`` pushed to."""

    repository: str
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    endpoints: list[str] = field(default_factory=list)


class V1ImageLike(Protocol):
    """What :meth:`V1Client.push` needs of an image: ``id`` (64 hex), ``json`` (bytes exactly
    as to upload) and ``layer`` (bytes, a path, or a binary file object)."""

    id: str
    json: bytes
    layer: Any
