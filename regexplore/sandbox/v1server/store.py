"""What a :class:`~regexplore.sandbox.v1server.LocalV1Registry` serves and how: its options, images,
repositories, tokens and sessions, all in memory behind one lock (everything but the sockets)."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...protocol.v1.tarsum import PayloadChecksum, TarSum, TarSumError
from .images import SEED_DESCRIPTION, SEED_REPOSITORY, V1Image, seed_content

__all__ = ["Repo", "Session", "StoredImage", "Token", "V1Store", "normalize"]

_IMAGE_ID_RE = re.compile(r"^[a-f0-9]{64}$")


@dataclass
class StoredImage:
    json: bytes
    ancestry: list[str]
    layer: bytes | None = None
    checksums: list[str] = field(default_factory=list)  # what the Python server keeps in _checksum
    tarsum: str | None = None  # computed at upload when the layer is a readable tar
    uploading: bool = False  # the Python server's "_inprogress" mark


@dataclass
class Repo:
    images: list[dict[str, str]] = field(default_factory=list)  # the index's [{"id", "checksum"}]
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    private: bool = False


@dataclass
class Token:
    repository: str
    access: str
    used: bool = False


@dataclass
class Session:
    repository: str
    access: str


class V1Store:
    """The state of a v1 index + registry pair; :class:`~regexplore.sandbox.v1server.LocalV1Registry`
    adds the sockets. The parameters are documented there."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        tags_form: str = "dict",
        standalone: bool = False,
        standalone_header: str | None = None,
        registry_version: str = "0.9.1",
        token_prefix: bool | None = None,
        tokens_per_response: int = 1,
        token_reuse: bool = False,
        extra_endpoints: Sequence[str] = (),
        odd_whitespace: bool = True,
        push_redirect: int | None = None,
        accept_ranges: bool = True,
        drop_layer_after: int | None = None,
        drop_layer_times: int = 1,
        checksum_header: str = "X-Docker-Payload-Checksum",
        content_range: str = "python",
        verify_tarsum: bool = True,
        host: str = "127.0.0.1",
        seed: bool = False,
    ) -> None:
        if tags_form not in ("dict", "list", "list-empty"):
            raise ValueError("tags_form must be 'dict', 'list' or 'list-empty'")
        if checksum_header not in ("X-Docker-Payload-Checksum", "X-Docker-Checksum"):
            raise ValueError("checksum_header must be 'X-Docker-Payload-Checksum' or 'X-Docker-Checksum'")
        if content_range not in ("python", "rfc"):
            raise ValueError("content_range must be 'python' or 'rfc'")
        self.users = dict(users or {})
        self.tags_form = tags_form
        self.standalone = standalone
        self.standalone_header = standalone_header
        self.registry_version = registry_version
        self.token_prefix = standalone if token_prefix is None else token_prefix
        self.tokens_per_response = tokens_per_response
        self.token_reuse = token_reuse
        self.extra_endpoints = list(extra_endpoints)
        self.odd_whitespace = odd_whitespace
        self.push_redirect = push_redirect
        self.accept_ranges = accept_ranges
        self.drop_layer_after = drop_layer_after
        self.drop_layer_times = drop_layer_times
        self.checksum_header = checksum_header
        self.content_range = content_range
        self.verify_tarsum = verify_tarsum
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._images: dict[str, StoredImage] = {}
        self._repos: dict[str, Repo] = {}
        self._tokens: dict[str, Token] = {}  # signature -> token
        self._sessions: dict[str, Session] = {}  # cookie value -> session
        self._redirected: set[str] = set()
        self._drops_done = 0
        self.index_url = self.registry_url = self.registry_host = ""
        if seed:
            images, tags = seed_content()
            self.preload(SEED_REPOSITORY, images, tags, description=SEED_DESCRIPTION)

    # -- preloading (no HTTP) ---------------------------------------------------------------------
    def add_image(self, image: V1Image) -> None:
        """Store one image (JSON, ancestry, layer, payload checksum) as a finished push would.

        Raises
        ------
        ValueError
            If the id is not 64 hex characters, the JSON's ``id`` differs, or the parent is unknown.
        """
        doc = json.loads(image.json)
        if not _IMAGE_ID_RE.match(image.id) or doc.get("id") != image.id:
            raise ValueError(f"bad image id {image.id!r}")
        with self._lock:
            parent = doc.get("parent")
            if parent and parent not in self._images:
                raise ValueError(f"parent {parent} of {image.id} is not stored yet (add base first)")
            ancestry = [image.id] + (self._images[parent].ancestry if parent else [])
            payload = PayloadChecksum(image.json)
            payload.update(image.layer)
            self._images[image.id] = StoredImage(
                json=image.json, ancestry=ancestry, layer=image.layer,
                checksums=[payload.checksum], tarsum=_layer_tarsum(image.layer, image.json),
            )

    def preload(
        self,
        repository: str,
        images: Iterable[V1Image],
        tags: Mapping[str, str] | None = None,
        *,
        description: str | None = None,
        private: bool = False,
    ) -> None:
        """Store a chain of images (base first) and a repository with its tags.

        Parameters
        ----------
        repository
            ``"ns/repo"`` or a bare ``"repo"`` (stored as ``library/repo``).
        images
            Images in push order (each parent before its children).
        tags
            ``{tag: image id}``.
        description
            Shown by ``/v1/search`` (``null`` when ``None``, like the Python server).
        private
            The index then requires valid Basic auth for ``GET …/images``.
        """
        name = normalize(repository)
        with self._lock:
            repo = self._repos.setdefault(name, Repo())
            repo.description, repo.private = description, private
            for image in images:
                if image.id not in self._images:
                    self.add_image(image)
                stored = self._images[image.id]
                checksum = stored.tarsum or ""
                repo.images = [i for i in repo.images if i["id"] != image.id]
                repo.images.append({"id": image.id, "checksum": checksum})
            for tag, image_id in (tags or {}).items():
                if image_id not in self._images:
                    raise ValueError(f"tag {tag} points at unknown image {image_id}")
                repo.tags[tag] = image_id

    # -- introspection for tests ------------------------------------------------------------------
    def image_layer(self, image_id: str) -> bytes | None:
        """The stored layer bytes of an image (``None`` if absent)."""
        with self._lock:
            stored = self._images.get(image_id)
            return None if stored is None else stored.layer

    def image_complete(self, image_id: str) -> bool:
        """True when the image exists and its upload was confirmed by a checksum PUT."""
        with self._lock:
            stored = self._images.get(image_id)
            return stored is not None and not stored.uploading and stored.layer is not None

    def tags(self, repository: str) -> dict[str, str]:
        """A copy of a repository's tags (``{}`` if unknown)."""
        with self._lock:
            repo = self._repos.get(normalize(repository))
            return dict(repo.tags) if repo else {}

    def index_images(self, repository: str) -> list[dict[str, str]]:
        """A copy of the index's image list for a repository."""
        with self._lock:
            repo = self._repos.get(normalize(repository))
            return [dict(i) for i in repo.images] if repo else []

    # -- helpers used by the handler --------------------------------------------------------------
    def _ping_standalone_value(self) -> str:
        if self.standalone_header is not None:
            return self.standalone_header
        return str(bool(self.standalone))  # Python's str(bool): "True" / "False"

    def _endpoints_header(self) -> str:
        hosts = [self.registry_host, *self.extra_endpoints]
        if self.odd_whitespace:
            return " \t,  ".join(hosts) + " "
        return ",".join(hosts)

    def _issue_tokens(self, repository: str, access: str) -> list[str]:
        values = []
        with self._lock:
            for _ in range(max(1, self.tokens_per_response)):
                signature = secrets.token_hex(8).upper()
                self._tokens[signature] = Token(repository, access)
                value = f'signature={signature},repository="{repository}",access={access}'
                values.append(("Token " + value) if self.token_prefix else value)
        return values


def normalize(repository: str) -> str:
    """``redis`` → ``library/redis``; strips slashes (toolkit.parse_repository_name)."""
    parts = repository.strip("/").split("/", 1)
    return f"library/{parts[0]}" if len(parts) < 2 else f"{parts[0]}/{parts[1]}"


def _layer_tarsum(layer: bytes, image_json: bytes) -> str | None:
    ts = TarSum(decompress=True)
    try:
        ts.update(layer)
        return ts.sum(image_json)
    except TarSumError:
        return None
