"""``Registry``: the facade a notebook user meets.

It owns one :class:`~regexplore.http.transport.Transport` and the protocol clients (``reg.v2``), and
turns their answers into DataFrames (:mod:`regexplore.model.frames`). A user who wants raw protocol
access uses ``reg.v2``; a user who wants a table never sees HTTP.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self, TypeVar

from ._image_layers import ImageEfficiency, ImageLayers, files_columns, inside, packages_frame
from ._resolve import MAX_INDEX_ENTRIES_ENV, Resolver
from ._supply_chain import SupplyChain
from ._v1_adapter import V1_CAN, V1Adapter, detect_api
from .content.budget import MAX_IMAGE_BYTES_ENV, ImageBudget, Replay
from .errors import InvalidReference, NotFound, RegistryError
from .http.auth import RegistryAuth, resolve_credentials
from .http.deadline import call as deadline_call
from .http.deadline import carry
from .http.redact import Secret
from .http.transport import Transport, base_url_for
from .model.frames import make_frame
from .model.oci import Manifest, history_rows, layer_rows, v1_compatibility
from .protocol.hub import HubClient, HubResult, filter_catalog_search
from .protocol.referrers import Referrers
from .protocol.v1.client import V1Client
from .protocol.v2 import V2Client
from .reference import DOCKER_HUB, ImageRef, parse_reference

if TYPE_CHECKING:  # pandas is imported when the first table is built, not at import time
    import pandas as pd

__all__ = ["MAX_IMAGE_BYTES_ENV", "MAX_INDEX_ENTRIES_ENV", "Registry"]

RefLike = "str | ImageRef"
F = TypeVar("F", bound=Callable[..., Any])


def _timed(*, transfer: bool = False) -> Callable[[F], F]:
    """Run a public method under the registry's deadline (:mod:`regexplore.http.deadline`): the
    metadata one, or with ``transfer=True`` the one for calls that move blob bytes. A call made
    while another runs (``tag()`` asking ``manifest()``) stays under the outer deadline."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(self: Registry, *args: Any, **kw: Any) -> Any:
            with deadline_call(self.transport.limits, f"{fn.__name__}()", transfer=transfer):
                return fn(self, *args, **kw)
        return run  # type: ignore[return-value]
    return wrap


def _routed(*, probe: bool = False) -> Callable[[F], F]:
    """The method answers for a v2 registry; once the registry is known to speak v1, the v1 adapter's
    method of the same name answers instead (:meth:`Registry._route`). With ``probe=True``, in
    ``api="auto"`` a :class:`NotFound` from the v2 answer makes the registry probe its API once."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(self: Registry, *args: Any, **kw: Any) -> Any:
            return self._route(fn.__name__, lambda: fn(self, *args, **kw), args, kw, probe=probe)
        return run  # type: ignore[return-value]
    return wrap


#: what a v2 registry can do, in the names of :meth:`Registry.can` (``V1_CAN``: what a v1 one can)
_V2_CAN = frozenset({"ping", "search", "catalog", "tags", "tag details", "manifest", "platforms", "config",
                     "history", "layers", "files", "diff", "read_file", "extract", "download", "save", "push",
                     "tag", "delete", "referrers", "attach", "attestations", "sbom", "provenance", "verify",
                     "os_release", "packages", "efficiency"})

class Registry:
    """A container registry: OCI Distribution / Docker Registry v2.

    Parameters
    ----------
    host_or_url : ``"127.0.0.1:5000"``, ``"docker.io"``, ``"ghcr.io"`` or
        ``"https://registry.example.com"``. https by default; http for an explicit ``http://``
        URL or a loopback host.
    auth : ``(user, password)``, a bearer token string, or None (Docker config, then anonymous).
    insecure : skip TLS verification (it does NOT mean http).
    ca_bundle : a CA file for a private CA.
    cert : client certificate (path or ``(cert, key)``) for mTLS registries.
    oauth : with ``(user, password)``, ask the token server with the OAuth2 password grant (a
        ``POST``, keeping the refresh token it returns for new scopes), falling back to the
        ``GET`` with Basic on 404/405. Off by default, as in Docker, which POSTs only with an
        identity token (that always uses the ``refresh_token`` grant).
    max_workers : concurrent metadata requests (pooled connections), default 16.
    timeout : seconds per connect / read. A whole call has a deadline of its own: the attributes
        :attr:`deadline` (metadata calls) and :attr:`transfer_deadline` (calls that move blobs),
        from ``REGEXPLORE_DEADLINE`` / ``REGEXPLORE_TRANSFER_DEADLINE``; see :mod:`regexplore.http.deadline`.
    api : ``"v2"``, ``"v1"`` (the legacy Registry + Index API, ``reg.v1``) or ``"auto"`` (default):
        v2 calls as usual; when one finds nothing (404) the registry is probed once, ``/v2/``
        first, then ``/v1/_ping``, and a v1 registry is then spoken to in v1. With v1,
        ``tags``/``history``/``search``/``download`` answer in the same frames (``history`` adds
        ``id`` and ``parent``); ``catalog`` and the manifest-based calls raise ``RegistryError``
        (the v1 behaviour is in :mod:`regexplore._v1_adapter`; :meth:`can` says what this registry does).

    Examples
    --------
    >>> reg = Registry("127.0.0.1:5000")                       # doctest: +SKIP
    >>> reg.tags("demo/busybox", details=True)                 # doctest: +SKIP
    """

    def __init__(
        self,
        host_or_url: str,
        *,
        auth: Any = None,
        insecure: bool = False,
        ca_bundle: str | None = None,
        cert: Any = None,
        oauth: bool = False,
        max_workers: int = 16,
        timeout: float = 30.0,
        api: str = "auto",
    ) -> None:
        if "@" in host_or_url:  # user:password@ (refused by base_url_for): out of tracebacks' locals
            host_or_url = Secret(host_or_url)
        if api not in ("auto", "v2", "v1"):
            raise ValueError(f"api must be 'auto', 'v2' or 'v1', not {api!r}")
        self.base_url = base_url_for(host_or_url)
        host = self.base_url.split("://", 1)[1]
        #: the registry part of image references that belong here (``docker.io`` for Docker Hub)
        self.name = DOCKER_HUB if host == "registry-1.docker.io" else host
        if self.name == DOCKER_HUB:
            if api == "v1":  # Docker Hub's v1 index (search still answers; pulls ended in 2019)
                self.base_url, host = "https://index.docker.io", "index.docker.io"
            else:
                api = "v2"
        if insecure:
            warnings.warn(f"TLS verification is off for {host}: anyone on the path can read and change "
                          "what you fetch", stacklevel=2)
        verify: bool | str = False if insecure else (ca_bundle or True)
        creds = resolve_credentials(host, auth)
        self._auth = RegistryAuth(host, creds, oauth=oauth)
        self.transport = Transport(self.base_url, auth=self._auth, verify=verify, cert=cert, timeout=timeout,
                                   pool_size=max_workers)
        self.max_workers = max_workers
        self.v2 = V2Client(self.transport)
        #: the legacy v1 client when this registry speaks v1 (``api="v1"``, or found by ``"auto"``)
        self.v1: V1Client | None = None
        self._v1_adapter: V1Adapter | None = None  # set once the registry is known to speak v1
        self._api: str | None = None if api == "auto" else api
        self._api_lock = threading.Lock()
        if api == "v1":
            self._use_v1()
        self._hub: HubClient | None = None
        self._hub_lock = threading.Lock()
        self._resolver = Resolver(self.v2)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._layers = ImageLayers(self)
        self._supply = SupplyChain(self._resolver, self._map)

    # ----------------------------------------------------------------- plumbing
    def __repr__(self) -> str:  # also for a half-built object (a traceback's locals during __init__)
        auth = getattr(self, "_auth", None)
        return f"Registry({getattr(self, 'base_url', '?')!r}, auth={auth.source if auth else '?'})"

    def _repr_html_(self) -> str:
        from html import escape

        return (f"<div class='regexplore-registry'><b>Registry</b> <code>{escape(self.base_url)}</code>"
                f" &middot; credentials: {escape(self._auth.source)}"
                f" &middot; {len(self.transport.trace_records)} HTTP exchanges so far</div>")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._hub is not None:
            self._hub.close()
        self.transport.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="regexplore")
            return self._pool

    def _map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) <= 1:
            return [fn(i) for i in items]
        return list(self._executor().map(carry(fn), items))  # the workers keep the call's deadline

    @property
    def deadline(self) -> float:
        """Seconds a metadata call (``catalog``, ``tags``, ``manifest``, ...) may take in all
        (``REGEXPLORE_DEADLINE``, default 900; ``inf``: none). Settable."""
        return self.transport.limits.deadline

    @deadline.setter
    def deadline(self, seconds: float) -> None:
        self.transport.limits.deadline = float(seconds)

    @property
    def transfer_deadline(self) -> float:
        """Seconds a call that moves blob bytes (``download``, ``save``, ``push``, ``files``,
        ``diff``, ``read_file``, ``extract``) may take in all (``REGEXPLORE_TRANSFER_DEADLINE``,
        default 6 h; ``inf``: none). Settable."""
        return self.transport.limits.transfer_deadline

    @transfer_deadline.setter
    def transfer_deadline(self, seconds: float) -> None:
        self.transport.limits.transfer_deadline = float(seconds)

    def ref(self, ref: RefLike) -> ImageRef:
        """Parse ``ref`` relative to this registry (``"demo/app:1"``, ``"demo/app@sha256:…"``)."""
        if isinstance(ref, ImageRef):
            r = ref
        else:
            r = parse_reference(ref, default_registry=self.name)
        if r.registry != self.name:
            # "dots.name/app" or "localhost/app" is a valid repository name that Docker's grammar reads as
            # a host. It is read as a name here only when this registry has that repository (one tags
            # request, remembered), so a reference to another registry is never pushed or tagged here.
            local_names = isinstance(ref, str) and self.name != DOCKER_HUB  # Hub's namespaces have no dots
            local = self._resolver.local_ref(self.name, ref) if local_names else None
            if local is not None:
                return local
            raise InvalidReference(f"{r} belongs to {r.registry}, not to this registry ({self.name}); for a "
                                   f"repository of that name here, write {self.name}/{r.repository}")
        return r

    def _repo(self, repo: str | ImageRef) -> str:
        """The repository name ``repo`` is or names (an :class:`ImageRef`'s, of any registry)."""
        if isinstance(repo, ImageRef):
            return repo.repository
        return self.ref(repo).repository

    # ----------------------------------------------------------------- manifests (see _resolve.py)
    def _resolve(self, ref: ImageRef, platform: str | None) -> tuple[Manifest, Manifest | None]:
        """(image manifest, index it came from or None); for an index, ``platform`` chooses."""
        return self._resolver.resolve(ref, platform)

    def _flat_index(self, repo: str, index: Manifest) -> dict:
        """``index`` with its nested indexes expanded (:meth:`Resolver.flat_index`)."""
        return self._resolver.flat_index(repo, index)

    # ----------------------------------------------------------------- v1 / v2
    @property
    def api(self) -> str:
        """``"v2"``, ``"v1"``, or ``"auto"`` while not yet known (no request is made to find out)."""
        return self._api or "auto"

    def can(self, what: str) -> bool:
        """True if this registry (as far as known: a v2 one until ``api="auto"`` finds v1) answers
        ``what``: a method's name (``"catalog"``, ``"manifest"``, ``"files"``, …) or ``"tag details"``
        (``tags(details=True)``). Raises ``ValueError`` for another name."""
        if what not in _V2_CAN:
            raise ValueError(f"unknown capability {what!r}; one of {sorted(_V2_CAN)}")
        return what in (V1_CAN if self._v1_adapter is not None else _V2_CAN)

    def _use_v1(self) -> V1Client:
        if self.v1 is None:
            self.v1 = V1Client(self.transport, self._auth.credentials)
        self._v1_adapter = V1Adapter(self.v1, self.name, self.base_url, self.ref, self._repo)
        self._api = "v1"
        return self.v1

    def _probe_api(self) -> Any:
        """Once, in ``api="auto"``: ``GET /v2/``, then ``/v1/_ping``; a registry with no ``/v2/`` whose
        ``/v1/_ping`` answers is spoken to in v1 from then on. Returns the ``/v2/`` answer when it said
        v2 (for :meth:`ping`), else None."""
        with self._api_lock:
            if self._api is not None:
                return None
            api, answer = detect_api(self.transport)
            if api == "v1":
                self._use_v1()  # the adapter first: a call that sees "v1" finds it
            else:
                self._api = api
            return answer

    def _route(self, method: str, v2_call: Callable[[], Any], args: tuple, kw: dict, *, probe: bool) -> Any:
        """``v2_call()``, or the v1 adapter's ``method(*args, **kw)`` for a v1 registry. With ``probe``,
        in ``api="auto"`` a v2 404 may reveal a v1 registry (:meth:`_probe_api`)."""
        if self._v1_adapter is None:
            try:
                return v2_call()
            except NotFound:
                if probe:
                    self._probe_api()
                if self._v1_adapter is None:
                    raise
        return getattr(self._v1_adapter, method)(*args, **kw)

    def _require_v1(self) -> V1Client:
        assert self.v1 is not None
        return self.v1

    # ----------------------------------------------------------------- public API
    @_timed()
    def ping(self) -> dict:
        """``GET /v2/`` → dict: status, API version header, auth scheme offered, whether we are in.
        In ``api="auto"`` this finds the API first (reusing the probe's ``GET /v2/``)."""
        answer = self._probe_api()
        return self._route("ping", lambda: self._ping_v2(answer), (), {}, probe=False)

    def _ping_v2(self, answer: Any) -> dict:
        """The v2 ping (``answer``: a ``GET /v2/`` response already in hand, or None), with the auth
        scheme this client uses when the answer offered none."""
        out = self.v2.ping(answer)
        if out.get("auth_scheme") is None:
            if self._auth._bearer is not None:
                out["auth_scheme"] = "Bearer"
            elif self._auth._basic:
                out["auth_scheme"] = "Basic"
        return out

    def whoami(self) -> str:
        """Which credential source is in use: ``"anonymous"``, ``"explicit"``, ``"docker config …"``
        or ``"credential helper …"`` (never the secret)."""
        creds = self._auth.credentials
        if creds is None:
            return "anonymous"
        who = f" as {creds.username}" if creds.username else ""
        return f"{creds.source}{who}"

    @property
    def rate_limit(self) -> dict:
        """Docker Hub's pull rate limit as last seen (``limit``, ``remaining``, ``window_s``, ``source``)."""
        rl = self.transport.rate_limit
        return {"limit": rl.limit, "remaining": rl.remaining, "window_s": rl.window_s, "source": rl.source}

    @property
    def trace(self) -> pd.DataFrame:
        """Every HTTP exchange so far (time, method, url, status, bytes, elapsed_ms, note), redacted;
        Docker Hub web API / index calls (``reg.hub``) included, in time order."""
        from datetime import UTC, datetime

        rows = []
        records = list(self.transport.trace_records)
        if self._hub is not None:
            records = sorted(records + list(self._hub.transport.trace_records), key=lambda r: r["time"])
        for r in records:
            row = dict(r)
            row["time"] = datetime.fromtimestamp(r["time"], UTC)
            if not isinstance(row["status"], int):
                row["note"] = f"{row['status']} {row.get('note') or ''}".strip()
                row["status"] = None
            rows.append(row)
        return make_frame("trace", rows)

    def clear_trace(self) -> None:
        self.transport.trace_records.clear()
        if self._hub is not None:
            self._hub.transport.trace_records.clear()

    @property
    def hub(self) -> HubClient | None:
        """Docker Hub's own API (search, tag metadata) for ``docker.io``, else None. It has its own
        transport: the registry's credentials never go to hub.docker.com or index.docker.io."""
        if self.name != DOCKER_HUB:
            return None
        with self._hub_lock:
            if self._hub is None:
                self._hub = HubClient(timeout=self.transport.timeout)
            return self._hub

    @_timed()
    @_routed(probe=True)
    def search(self, term: str, limit: int = 25) -> pd.DataFrame:
        """Search repositories → DataFrame[name, description, stars, official, automated, pulls].

        Docker Hub: ``index.docker.io/v1/search`` (what ``docker search`` uses), falling back to
        ``hub.docker.com/v2/search/repositories`` (``df.attrs["notes"]`` says why). Other
        registries have no search API: the ``/v2/_catalog`` names containing every word of
        ``term`` (case-insensitive), with only ``name`` filled; ``df.attrs["source"]`` is
        ``"catalog"`` and the notes say so. ``df.attrs``: registry, source, total, notes.
        """
        hub = self.hub
        if hub is not None:
            result = hub.search(term, limit)
        else:
            names = (name for page in self.v2.catalog() for name in page)
            result = HubResult(filter_catalog_search(names, term, limit), "catalog", None,
                               [f"{self.name} has no search API: /v2/_catalog filtered by substring"])
        return make_frame("search", result.rows, attrs={"registry": self.name, **result.attrs()})

    @_timed()
    @_routed(probe=True)
    def catalog(self, limit: int | None = None) -> pd.DataFrame:
        """Every repository (``/v2/_catalog``, all pages; page size up to 1000) → DataFrame[repository]."""
        repos = [name for page in self.v2.catalog(limit=limit) for name in page]
        return make_frame("catalog", ({"repository": r} for r in repos), attrs={"registry": self.name})

    @_timed()
    @_routed(probe=True)
    def tags(self, repo: str | ImageRef, details: bool = False, limit: int | None = None) -> pd.DataFrame:
        """Tags of ``repo``. With ``details=True`` each tag's digest, media_type, size, created,
        os, architecture and platforms, fetched concurrently and deduplicated by digest.
        For an index, created/os/architecture/size describe the default platform
        (linux/amd64, else the first)."""
        name = self._repo(repo)
        if details and self.hub is not None:
            return self._hub_tag_details(name, limit)
        tags = self.v2.tags(name, limit=limit)
        if not details:
            return make_frame("tags", ({"repository": name, "tag": t} for t in tags),
                              attrs={"registry": self.name})
        return make_frame("tags_details", self._tag_rows(name, tags), attrs={"registry": self.name})

    def _tag_rows(self, name: str, tags: list[str]) -> list[dict]:
        """The ``tags_details`` rows of ``tags`` (:meth:`Resolver.tag_row`), fetched concurrently."""
        return self._map(lambda t: self._resolver.tag_row(name, t), tags)

    def _hub_tag_details(self, name: str, limit: int | None) -> pd.DataFrame:
        """``tags(details=True)`` on Docker Hub: Hub's tag metadata (one request per 100 tags instead
        of manifests and configs per tag). ``created`` is Hub's ``last_updated`` (last push) and
        ``size`` its ``full_size``; tags Hub lists without images get the registry's answer.
        If the Hub API fails, the registry path is used and the note says why."""
        assert self.hub is not None
        try:
            result = self.hub.tags(name, limit=limit)
        except RegistryError as exc:
            rows = self._tag_rows(name, self.v2.tags(name, limit=limit))
            return make_frame("tags_details", rows, attrs={
                "registry": self.name, "source": "registry manifests",
                "notes": [f"Hub tag metadata failed ({exc}); read the registry instead"]})
        rows = result.rows
        missing = [i for i, r in enumerate(rows) if r["images_missing"]]
        if missing:
            fixed = self._tag_rows(name, [rows[i]["tag"] for i in missing])
            for i, row in zip(missing, fixed):
                rows[i] = row
        attrs = {"registry": self.name, **result.attrs(),
                 "created": "Hub's last_updated (when the tag was last pushed)",
                 "size": "Hub's full_size (one platform's compressed size)"}
        return make_frame("tags_details", rows, attrs=attrs)

    @_timed()
    @_routed()
    def manifest(self, ref: RefLike, platform: str | None = None) -> Manifest:
        """The manifest of ``ref`` (digest computed from the raw bytes and verified). With
        ``platform`` and an index, the platform's image manifest instead."""
        return self._resolver.manifest(self.ref(ref), platform)

    @_timed()
    @_routed()
    def platforms(self, ref: RefLike) -> pd.DataFrame:
        """The platforms of an index (one row for a single image). Attestation entries
        (unknown/unknown) are kept but flagged in ``attestation``. Nested indexes are expanded, each
        once (listed again, it adds no rows); an entry the index itself lists twice is two rows."""
        r = self.ref(ref)
        return make_frame("platforms", self._resolver.platform_rows(r), attrs={"reference": str(r)})

    @_timed()
    @_routed()
    def config(self, ref: RefLike, platform: str | None = None) -> dict:
        """The image config (dict) of ``ref``; for an index, of the chosen platform. For schema1
        the top ``v1Compatibility`` entry."""
        r = self.ref(ref)
        image, _ = self._resolver.resolve(r, platform)
        if image.is_schema1:
            return v1_compatibility(image)
        return self._resolver.config_of(r.repository, image, strict=True) or {}

    def _image(self, ref: RefLike, platform: str | None) -> tuple[ImageRef, Manifest, dict | None]:
        """(reference, image manifest for ``platform``, its config or None: schema1, not JSON)."""
        r = self.ref(ref)
        image, _ = self._resolver.resolve(r, platform)
        return r, image, None if image.is_schema1 else self._resolver.config_of(r.repository, image)

    @_timed()
    @_routed(probe=True)
    def history(self, ref: RefLike, platform: str | None = None) -> pd.DataFrame:
        """docker-history-like table, oldest step first (see the README's column table)."""
        r, image, cfg = self._image(ref, platform)
        return make_frame("history", history_rows(image, cfg), attrs={"reference": str(r), "digest": image.digest})

    @_timed()
    @_routed()
    def layers(self, ref: RefLike, platform: str | None = None) -> pd.DataFrame:
        """The layers of ``ref`` in manifest order."""
        r, image, cfg = self._image(ref, platform)
        return make_frame("layers", layer_rows(image, cfg), attrs={"reference": str(r), "digest": image.digest})

    # ----------------------------------------------------------------- blobs: downloads, save, push
    @_timed(transfer=True)
    def download(self, ref_or_digest: RefLike, dest: str = ".", *, platform: str | None = None,
                 progress: Any = True, parallel: int = 4, layers: Any = None, cache: Any = None) -> list:
        """Download an image's config and layers (or one blob by digest) into ``dest``, verified,
        atomic and resumable; returns the paths. See :func:`regexplore.content.blobs.download`."""
        from .content.blobs import download

        return download(self, ref_or_digest, dest, platform=platform, progress=progress, parallel=parallel,
                        layers=layers, cache=cache)

    @_timed(transfer=True)
    @_routed()
    def save(self, ref: RefLike, path: str, format: str = "oci", *, platform: str | None = None) -> str:
        """Write ``ref`` as an OCI image layout (a folder, or a ``.tar``). See :func:`regexplore.content.blobs.save`."""
        from .content.blobs import save

        return save(self, ref, path, format=format, platform=platform)

    @_timed(transfer=True)
    @_routed()
    def push(self, source: Any, ref: RefLike, **kw: Any) -> str:
        """Push an OCI layout (or a list of files that become a one-layer image) to ``ref``;
        returns the manifest digest. See :func:`regexplore.content.blobs.push`."""
        from .content.blobs import push

        return push(self, source, ref, **kw)

    @_timed()
    @_routed()
    def tag(self, ref: RefLike, new_tag: str) -> str:
        """Give the manifest of ``ref`` another tag (same bytes, same digest); returns the digest."""
        r = self.ref(ref)
        m = self.manifest(r)
        return self.v2.put_manifest(r.repository, new_tag, m.raw, m.media_type)

    @_timed()
    @_routed()
    def delete(self, ref: RefLike) -> str:
        """Delete the manifest of ``ref`` (by digest). Warns that every tag sharing that digest
        goes with it. Returns the deleted digest."""
        r = self.ref(ref)
        digest = r.digest or self.v2.head_manifest(r.repository, r.reference)["digest"] or self.manifest(r).digest
        warnings.warn(f"deleting {digest} removes every tag of {r.repository} that points to it", stacklevel=2)
        self.v2.delete_manifest(r.repository, digest)
        return digest

    # ----------------------------------------------------------------- supply chain: referrers
    @_timed()
    @_routed()
    def referrers(self, ref: RefLike, artifact_type: str | None = None, *, platform: str | None = None,
                  recursive: bool = False) -> pd.DataFrame:
        """The manifests that refer to ``ref`` through their ``subject`` (OCI 1.1), as a ``referrers`` frame.

        From the referrers API (every page; ``artifact_type`` asked of the server, and applied here when the
        server does not say it filtered), else the ``sha256-<hex>`` referrers tag, plus cosign's
        ``.sig``/``.att``/``.sbom`` tags (``source`` says which). For an index, ``platform=None`` lists the
        index's own referrers and ``platform=`` those of that platform's manifest. ``recursive=True`` adds the
        referrers of referrers (``depth`` 2, 3, …), each level fetched concurrently.
        ``attrs``: ``reference``, ``digest`` (of the subject). See :mod:`regexplore.protocol.referrers` for the
        bounds; raises :class:`ResponseTooLarge` past ``$REGEXPLORE_MAX_REFERRERS`` descriptors."""
        r = self.ref(ref)
        subject = self._resolver.manifest(r, platform)
        rows = self._referrers().list(r.repository, subject.digest, artifact_type, recursive=recursive)
        return make_frame("referrers", rows, attrs={"reference": str(r), "digest": subject.digest})

    @_timed(transfer=True)
    @_routed()
    def attach(self, ref: RefLike, files: Any, *, artifact_type: str, annotations: dict[str, str] | None = None) -> str:
        """Push ``files`` (a path, a ``(path, media_type)`` pair, or a list of them) as an OCI 1.1 artifact of
        ``artifact_type`` whose ``subject`` is ``ref``'s manifest; returns the artifact's digest.

        A registry without the referrers API (no ``OCI-Subject`` in the answer) gets the ``sha256-<hex>``
        referrers tag updated by this client: the descriptor added, the others kept, re-read and retried when
        another writer changed it (``If-Match`` where the registry honours it). Without conditional PUTs that
        update cannot be made atomic: of two clients attaching within one round trip, one entry can be lost.
        A ``sha256-<hex>`` tag that holds something else than an image index is not overwritten:
        :class:`UnsupportedMediaType` (the artifact is pushed, not listed there)."""
        r = self.ref(ref)
        subject = self._resolver.manifest(r)
        one = isinstance(files, (str, os.PathLike, tuple))
        return self._referrers().attach(r.repository, subject, [files] if one else list(files),
                                        artifact_type=artifact_type, annotations=annotations)

    def _referrers(self) -> Referrers:
        return Referrers(self.v2, self._resolver.by_digest, self._map)

    # ----------------------------------------------------------------- layer contents
    @_timed(transfer=True)
    @_routed()
    def files(self, ref_or_layer_digest: RefLike, platform: str | None = None, *, merged: bool = False,
              max_bytes: int | None = None) -> pd.DataFrame:
        """Entries of an image's layer tars, streamed from the registry (no temp file, constant
        memory; each layer's digest is verified when its stream ends). For ``repo@sha256:…`` of a
        layer blob, that layer only. ``merged=True``: the final filesystem with whiteouts applied.
        ``max_bytes`` caps the decompressed bytes per layer (default 8 GiB,
        ``REGEXPLORE_MAX_LAYER_BYTES``); over it :class:`UnsafeLayer` is raised. A layer listed
        more than once is read once (its rows repeat where it is listed); all listed layers together
        may decompress to ``REGEXPLORE_MAX_IMAGE_BYTES`` (default 32 GiB), else
        :class:`ResponseTooLarge`."""
        from .content.layers import merge

        r = self.ref(ref_or_layer_digest)
        if self._resolver.is_blob(r):
            descs = [{"digest": r.digest, "mediaType": None, "size": None}]
        else:
            r, descs = self._layers.sources(r, platform)
        per_layer = self._layers.listings(r, descs, max_bytes, False, {})
        entries = merge(per_layer) if merged else [e for layer in per_layer for e in layer]
        return make_frame("files", columns=files_columns(entries), attrs={"reference": str(r), "merged": merged})

    @_timed(transfer=True)
    @_routed()
    def diff(self, ref_a: RefLike, ref_b: RefLike, platform: str | None = None) -> pd.DataFrame:
        """Paths that differ between the final filesystems of two images: ``change`` is added,
        removed or modified (type, size, mode, owner, link target, mtime or content differ;
        file contents are compared by sha256 while the layers stream). A layer is read once even
        when listed several times or by both images; each image's listed layers may decompress to
        ``REGEXPLORE_MAX_IMAGE_BYTES`` (default 32 GiB), else :class:`ResponseTooLarge`."""
        from .content.layers import diff, merge, shown_name

        memo: dict[str, tuple[list, int]] = {}

        def final(ref: RefLike) -> list:
            r, descs = self._layers.sources(ref, platform)
            return merge(self._layers.listings(r, descs, None, True, memo))

        a, b = final(ref_a), final(ref_b)
        rows = [{"path": shown_name(d.path), "change": d.change, "size_a": d.size_a, "size_b": d.size_b}
                for d in diff(a, b)]
        return make_frame("diff", rows, attrs={"a": str(self.ref(ref_a)), "b": str(self.ref(ref_b))})

    # ----------------------------------------------------------------- inside an image
    @_timed(transfer=True)
    @_routed()
    def os_release(self, ref: RefLike, platform: str | None = None) -> dict | None:
        """The image's operating system as syft identifies it: the final filesystem's ``etc/os-release``
        (else ``usr/lib/os-release``, ``etc/system-release-cpe``, ``etc/redhat-release``, busybox's
        version), symlinks followed inside the image, as a dict of os-release keys (``ID``,
        ``VERSION_ID``...), or None. Layers are read once per Registry (cached by digest)."""
        return inside(self._layers, ref, platform)[1].os_release()

    @_timed(transfer=True)
    @_routed()
    def packages(self, ref: RefLike, platform: str | None = None, *, types: list[str] | None = None) -> pd.DataFrame:
        """The ``packages`` frame of the image's final filesystem (syft's types, versions and purls;
        ``layer`` = the layer that introduced each package; only ``types`` if given, else ValueError
        naming the valid ones). ``attrs["skipped"]``: ``{"path", "reason", "layer"}`` of each file that
        could not be read. Layers are read once per Registry (cached by digest)."""
        return packages_frame(self._layers, ref, platform, types)

    @_timed(transfer=True)
    @_routed()
    def efficiency(self, ref: RefLike, platform: str | None = None) -> ImageEfficiency:
        """dive 0.13.1's efficiency of the image, exactly: ``score``, ``wasted_bytes``,
        ``user_wasted_percent``, ``image_size`` and ``files`` (the ``wasted`` frame, biggest first)."""
        from .content.inside.efficiency import efficiency

        r, descs = self._layers.sources(ref, platform)  # the scans alone: no final filesystem to merge
        return ImageEfficiency(str(r), efficiency([s.entries for s in self._layers.scans(r, descs)]))

    @_timed(transfer=True)
    @_routed()
    def read_file(self, ref: RefLike, path: str | bytes, platform: str | None = None, *,
                  max_bytes: int | None = None) -> bytes:
        """The bytes of one file of the image's final filesystem (``path`` as text, or as the exact
        bytes ``rx.raw_path`` gives for a name a table shows escaped), reading layers newest first
        and stopping at the first that has (or deletes) it; each layer read is verified against its
        digest before anything is returned (:class:`DigestMismatch`). The file is held in memory:
        one bigger than ``max_bytes`` (default 64 MiB, ``REGEXPLORE_MAX_FILE_BYTES``) raises
        :class:`ResponseTooLarge` before it is read, and so do layers that decompress to more than
        ``REGEXPLORE_MAX_IMAGE_BYTES`` (default 32 GiB) in all. Raises ``FileNotFoundError``."""
        from .content.layers import read_file

        r, descs = self._layers.sources(ref, platform)
        replays: dict[str, Replay] = {}
        try:
            openers = self._layers.openers(r, descs, ImageBudget(r), replays)
            return read_file(openers[::-1], path, max_file_bytes=max_bytes)
        finally:
            for replay in replays.values():
                replay.file.close()

    @_timed(transfer=True)
    @_routed()
    def extract(self, ref: RefLike, dest: str, platform: str | None = None, **kw: Any) -> Any:
        """Unpack the image's filesystem into ``dest`` (which must not exist, or be empty), safely:
        no absolute paths, no ``..``, no link leading outside, no device nodes, whiteouts applied;
        a hostile entry raises :class:`UnsafeLayer` naming it. Layers are verified as they stream;
        the work happens in a sibling temporary folder renamed into place only when everything
        succeeded, so a failure leaves nothing behind. A layer listed more than once is fetched once
        and applied where each listing puts it; the layers applied may decompress to
        ``REGEXPLORE_MAX_IMAGE_BYTES`` (default 32 GiB) in all, else :class:`ResponseTooLarge`.
        Returns the extraction summary."""
        import os
        import shutil
        import tempfile

        from .content.layers import extract

        r, descs = self._layers.sources(ref, platform)
        target = os.path.abspath(dest)
        if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
            raise FileExistsError(f"{dest} exists and is not an empty folder")
        parent = os.path.dirname(target) or "."
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".regexplore-extract-", dir=parent)
        replays: dict[str, Replay] = {}
        try:
            openers = self._layers.openers(r, descs, ImageBudget(r), replays, kw.pop("max_bytes", None))
            summary = extract([(d["digest"], opener) for d, opener in zip(descs, openers)], work, **kw)
            if os.path.isdir(target):
                os.rmdir(target)
            os.rename(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            for replay in replays.values():
                replay.file.close()
        return summary

    # ----------------------------------------------------------------- supply chain (see _supply_chain.py)
    @_timed()
    @_routed()
    def attestations(self, ref: RefLike) -> pd.DataFrame:
        """The buildkit attestations of an index → attestations frame: one row per in-toto layer of each
        attestation manifest (``vnd.docker.reference.type: attestation-manifest``), with the ``platform``
        of the image it attests. Empty for a single image or an index without attestations."""
        r = self.ref(ref)
        return make_frame("attestations", self._supply.attestation_rows(r), attrs={"reference": str(r)})

    @_timed()
    @_routed()
    def sbom(self, ref: RefLike, platform: str | None = None) -> pd.DataFrame:
        """The packages of the SBOM attached to ``ref`` (for an index: to ``platform``'s image, default
        linux/amd64) → packages frame with the columns an SBOM fills (name, version, type: syft's name for
        the purl type, purl, arch, source, licenses; not the document's root, the image itself). Looked
        for in buildkit's SPDX attestation, then OCI referrers (``attach``) and cosign's ``.att`` (DSSE)
        and ``.sbom`` tags; SPDX and CycloneDX JSON. ``df.attrs``: format, source, document (layer
        digest). The document is capped at ``REGEXPLORE_MAX_SBOM_BYTES`` (default 128 MiB): over it
        :class:`ResponseTooLarge`. Raises :class:`NotFound` when there is no SBOM."""
        from .content.attestations import is_sbom
        from .content.sbom import sbom_format, sbom_rows

        r = self.ref(ref)
        doc, _, predicate = self._supply.find(r, platform, is_sbom, "SBOM")
        rows = sbom_rows(predicate, f"SBOM {str(doc.descriptor.get('digest'))[:19]} of {r}")
        return make_frame("packages", rows, attrs={
            "reference": str(r), "format": sbom_format(predicate), "source": doc.source,
            "document": doc.descriptor.get("digest"), "manifest": doc.manifest})

    @_timed()
    @_routed()
    def provenance(self, ref: RefLike, platform: str | None = None) -> dict:
        """The SLSA provenance of ``ref`` (for an index: of ``platform``'s image) from its attestation →
        dict: predicate_type, builder_id, build_type, parameters, materials (v0.2 and v1 read into the
        same keys) and the whole ``predicate``. Raises :class:`NotFound` when there is none."""
        from .content.attestations import is_provenance, provenance_summary

        doc, predicate_type, predicate = self._supply.find(self.ref(ref), platform, is_provenance,
                                                           "SLSA provenance")
        return {**provenance_summary(predicate_type, predicate), "source": doc.source,
                "document": doc.descriptor.get("digest")}

    @_timed()
    @_routed()
    def verify(self, ref: RefLike, key: Any = None) -> pd.DataFrame:
        """cosign signatures of ``ref`` checked offline with ``key`` (a ``cosign.pub`` path, PEM bytes or a
        ``cryptography`` ECDSA public key) → signatures frame: one row per signature in the
        ``sha256-<hex>.sig`` manifest and in OCI 1.1 referrers of artifact type
        ``application/vnd.dev.cosign.artifact.sig.v1+json`` (cosign 2.x ``--registry-referrers-mode=oci-1-1``;
        ``source`` says which), ``verified`` only when the ECDSA signature checks over the payload
        and the payload signs ``ref``'s digest; ``error`` says why not. Keyless (Fulcio/Rekor) signatures
        are listed, not verified; so is every signature when ``key`` is None. No signature: an empty
        frame. Raises ``ValueError`` for a key that is not an ECDSA public key."""
        r = self.ref(ref)
        rows, digest = self._supply.signature_rows(r, key)
        return make_frame("signatures", rows, attrs={"reference": str(r), "signed_digest": digest})
