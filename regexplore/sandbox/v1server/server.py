"""``LocalV1Registry``: the v1 store served on loopback, one port per role, in daemon threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Self

from .handler import V1Handler
from .store import V1Store
from .wire import V1HTTPServer

__all__ = ["LocalV1Registry", "V1Server"]


class LocalV1Registry(V1Store):
    """In-process v1 Index and Registry on loopback ports; a context manager.

    Parameters
    ----------
    users
        ``{username: password}`` accepted by the index's Basic auth (and, in standalone mode,
        required on every request when not empty).
    tags_form
        ``"dict"`` (registry spec / Python server: ``{"latest": "<id>"}``), ``"list"`` (Docker
        Hub: ``[{"layer": "<8 hex>", "name": "latest"}]``) or ``"list-empty"`` (Hub later:
        ``"layer": ""``).
    standalone
        Python registry ``standalone: true`` mode (see the module docstring).
    standalone_header
        Override the ``X-Docker-Registry-Standalone`` value (default ``"True"``/``"False"`` as
        the Python server prints ``bool``; the Python mirror flavour sent ``"mirror"``).
    registry_version
        ``X-Docker-Registry-Version`` on every response.
    token_prefix
        Put ``Token `` before issued tokens (the Python standalone quirk). Default: only in
        standalone mode; the non-standalone index sends the docs' bare
        ``signature=…,repository="ns/repo",access=read``.
    tokens_per_response
        How many ``X-Docker-Token`` headers the index sends (Docker 1.3 joins them with ``,``).
    token_reuse
        Allow a token to be presented again without the session cookie (default: single use).
    extra_endpoints
        Further hosts appended to ``X-Docker-Endpoints`` (e.g. an unreachable one).
    odd_whitespace
        Format ``X-Docker-Endpoints`` as Docker's mock server did: ``"a \\t,  b "``.
    push_redirect
        Status (e.g. 302/307) the index answers to the first ``PUT /v1/repositories/<name>/``
        of each push, with ``Location`` pointing back at itself (Docker 1.3 re-sends the PUT).
    accept_ranges
        Advertise ``Accept-Ranges: bytes`` on layer GETs and honour ``Range``.
    drop_layer_after, drop_layer_times
        Fault injection: cut the connection after sending this many bytes of a layer body,
        for the first ``drop_layer_times`` layer GETs (then serve normally).
    checksum_header
        The header carrying the stored layer checksums on ``GET /v1/images/<id>/json`` (one
        header per checksum, as Flask sends a list): ``"X-Docker-Payload-Checksum"`` (default: the
        Python registry, ``images._get_image_json``) or ``"X-Docker-Checksum"`` (its 2013-14
        versions and the 2014 ``registry_api.md``).
    content_range
        How a ranged layer GET is answered. ``"python"`` (default) is ``images._get_image_layer``:
        ``Content-Range: <start>-<end>/<size>`` without the ``bytes`` unit, an open range
        ``bytes=N-`` ending at ``size`` (not ``size - 1``) with a ``Content-Length`` one byte more
        than the body (the connection then closes), and 416 for any range of fewer than two bytes
        (so for ``bytes=<size>-`` and for an empty layer). ``"rfc"``: RFC 7233 answers
        (``bytes <start>-<last>/<size>``, exact lengths), as a storage server would send.
    verify_tarsum
        Compute the tarsum of uploaded layers (gunzipping as needed) and reject a
        ``X-Docker-Checksum`` that differs with 400 ``Checksum mismatch``.
    host
        Loopback address to bind.
    seed
        Preload ``demo/busybox`` (:data:`SEED_REPOSITORY`): the three images of
        :func:`seed_content`, tagged ``1.0`` and ``latest``, with a search description.

    Attributes
    ----------
    index_url, registry_url : str
        ``http://127.0.0.1:<port>`` of each role (equal in standalone mode). ``url`` is the
        index's: the one URL a v1 client is given.
    registry_host : str
        ``127.0.0.1:<port>`` as listed in ``X-Docker-Endpoints``.
    requests : list[dict]
        One record per request received: ``role`` (``index``, ``registry`` or ``both``),
        ``method``, ``path`` (with query), ``headers`` (a dict; ``Authorization`` keeps only its
        scheme, e.g. ``"Basic <redacted>"``, and ``Cookie`` only its names), then, once the
        answer is sent, ``status`` (``None`` until then, or if the connection broke) and
        ``response_headers`` (a dict of strings, repeated headers joined by ``", "``; token
        signatures read ``signature=<redacted>`` and ``Set-Cookie`` keeps only cookie names and
        attributes).
    """

    _servers: Sequence[V1HTTPServer] = ()  # while running: one per role
    _threads: Sequence[threading.Thread] = ()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind the port(s) and serve in daemon threads. Returns ``self`` (already running: as is)."""
        if self._servers:
            return self
        roles = ["both"] if self.standalone else ["index", "registry"]
        servers: list[V1HTTPServer] = []
        threads: list[threading.Thread] = []
        self._servers, self._threads = servers, threads  # filled as they start: stop() closes those
        for role in roles:
            server = V1HTTPServer((self.host, 0), V1Handler, app=self, role=role)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"v1sandbox-{role}", daemon=True
            )
            thread.start()
            servers.append(server)
            threads.append(thread)
        urls = [f"http://{self.host}:{s.server_address[1]}" for s in self._servers]
        self.index_url, self.registry_url = urls[0], urls[-1]
        self.registry_host = self.registry_url.split("://", 1)[1]
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = (), ()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:  # never lists passwords or tokens
        return (f"<{type(self).__name__} index={self.index_url or '-'} registry={self.registry_url or '-'} "
                f"standalone={self.standalone} users={len(self.users)}>")

    @property
    def url(self) -> str:
        """The index URL (``""`` before ``start()``): what a v1 client is given."""
        return self.index_url

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return bool(self._servers)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first ``(user, password)`` of ``users``, or ``None`` without users."""
        return next(iter(self.users.items()), None)

    def client(self, **kw: Any) -> Any:
        """A ``regexplore.Registry(self.url, api="v1")`` with :attr:`credentials` (``kw`` passes on).

        Imports the facade (and so pandas) only when called."""
        from ... import Registry

        kw.setdefault("auth", self.credentials)
        return Registry(self.url, api="v1", **kw)


V1Server = LocalV1Registry  #: the name the test suite knew it by (``tests/support/v1server.py``)
