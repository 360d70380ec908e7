"""A legacy v1 registry (the Registry + Index API of 2013-2015) behind the facade's methods.

:class:`V1Adapter` has a method for each method of :class:`~regexplore.registry.Registry` that is not
the same for every API, with the same parameters and the same kind of answer: ``tags``, ``history``,
``search`` and ``ping`` answer in the frames v2 answers in (``history`` adds ``id`` and ``parent``);
what v1 cannot do (it has no catalog, manifests, digests or blobs) raises one clear
:class:`~regexplore.errors.RegistryError` naming the method. The facade picks the adapter once, when it
knows the registry speaks v1, and hands it the call; nothing else branches on the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import NotFound, RegistryError
from .http.transport import MiB, Transport
from .model.frames import make_frame
from .protocol.hub import HubResult
from .protocol.v1.client import V1Client
from .protocol.v1.parse import normalize_repository
from .reference import ImageRef

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["V1_CAN", "V1Adapter", "detect_api"]

#: what a v1 registry can do, in the names of :meth:`Registry.can <regexplore.registry.Registry.can>`
V1_CAN = frozenset({"ping", "search", "tags", "history", "download"})


def detect_api(transport: Transport) -> tuple[str, Any]:
    """Which API the registry behind ``transport`` speaks: ``GET /v2/`` first (a 200, a
    ``Docker-Distribution-API-Version`` header or a Bearer challenge say v2), then ``GET /v1/_ping``
    (a 200 or an ``X-Docker-Registry-*`` header say v1); anything else is taken as v2.
    Returns (``"v1"`` or ``"v2"``, the ``/v2/`` response when it said v2, else None)."""
    try:
        resp = transport.request("GET", "/v2/", ok=(200, 401), max_bytes=MiB, what="v2 probe")
        if resp.status_code == 200 or resp.headers.get("Docker-Distribution-API-Version") \
                or "bearer" in (resp.headers.get("WWW-Authenticate") or "").lower():
            return "v2", resp
    except NotFound:
        pass
    try:
        resp = transport.request("GET", "/v1/_ping", ok=(200, 401), what="v1 probe")
    except RegistryError:
        return "v2", None
    if resp.status_code == 200 or any(h.lower().startswith("x-docker-registry") for h in resp.headers):
        return "v1", None
    return "v2", None


def _not_in_v1(what: str) -> Callable[..., NoReturn]:
    """A method that raises :class:`RegistryError`: ``what`` is not part of the v1 API."""
    def refuse(self: V1Adapter, *args: Any, **kw: Any) -> NoReturn:
        raise RegistryError(f"{what} is not part of the v1 registry API ({self.base_url} speaks v1); "
                            "use tags(), history(), search() or download(), or reg.v1 for raw calls")
    refuse.__name__ = what.split("(")[0]
    refuse.__doc__ = f"Raises :class:`RegistryError`: {what} is not part of the v1 registry API."
    return refuse


class V1Adapter:
    """The facade's calls answered by a v1 registry.

    Parameters
    ----------
    client : the raw v1 client (``reg.v1``).
    registry : the registry's name, as frames' ``attrs["registry"]`` show it.
    base_url : the registry's URL, for error messages.
    ref, repo : the facade's parsers of a reference and of a repository name (``Registry.ref``,
        ``Registry._repo``).
    """

    def __init__(self, client: V1Client, registry: str, base_url: str, ref: Callable[[Any], ImageRef],
                 repo: Callable[[Any], str]) -> None:
        self.client = client
        self.registry = registry
        self.base_url = base_url
        self._ref = ref
        self._repo = repo

    def ping(self) -> dict:
        """``GET /v1/_ping`` → the same dict as the v2 ping."""
        return self.client.ping()

    def search(self, term: str, limit: int = 25) -> pd.DataFrame:
        """The v1 index's search (``/v1/search``) → the ``search`` frame."""
        rows, meta = self.client.search(term, limit=limit)
        result = HubResult(rows, "v1/search", meta.get("total"), [])
        return make_frame("search", result.rows, attrs={"registry": self.registry, **result.attrs()})

    def catalog(self, limit: int | None = None) -> NoReturn:
        """Raises :class:`RegistryError`: v1 has no catalog."""
        raise RegistryError(f"catalog is not available: {self.base_url} speaks the v1 API, which has no "
                            "catalog; search('') lists what a v1 registry's search knows")

    def tags(self, repo: str | ImageRef, details: bool = False, limit: int | None = None) -> pd.DataFrame:
        """The ``tags`` frame of ``repo`` (``attrs["api"]`` is ``"v1"``). Raises :class:`RegistryError`
        for ``details=True``: v1 has no manifests to describe a tag with."""
        name = self._repo(repo)
        tags = list(self.client.tags(name))[:limit]
        if details:
            _not_in_v1("tags(details=True)")(self)
        return make_frame("tags", ({"repository": normalize_repository(name), "tag": t} for t in tags),
                          attrs={"registry": self.registry, "api": "v1"})

    def history(self, ref: str | ImageRef, platform: str | None = None) -> pd.DataFrame:
        """The ``history_v1`` frame of ``ref``'s ancestry, oldest first (v1 has one platform per tag).
        ``attrs["layer_keys"]``: the key a download's progress events give each layer (``v1:<image id>``).
        Raises :class:`RegistryError` for a reference by digest alone."""
        r = self._ref(ref)
        if r.digest and not r.tag:
            raise RegistryError("v1 has no digests: name a tag or a 64-hex image id")
        rows = self.client.history(r.repository, r.tag or "latest")
        return make_frame("history_v1", rows, attrs={
            "reference": str(r), "digest": None, "image_id": rows[-1]["id"] if rows else None,
            "layer_keys": [f"v1:{row['id']}" for row in rows]})

    manifest = _not_in_v1("manifest()")
    platforms = _not_in_v1("platforms()")
    config = _not_in_v1("config()")
    layers = _not_in_v1("layers()")
    files = _not_in_v1("files()")
    diff = _not_in_v1("diff()")
    read_file = _not_in_v1("read_file()")
    extract = _not_in_v1("extract()")
    save = _not_in_v1("save()")
    push = _not_in_v1("push()")
    tag = _not_in_v1("tag()")
    delete = _not_in_v1("delete()")
    os_release = _not_in_v1("os_release()")
    packages = _not_in_v1("packages()")
    efficiency = _not_in_v1("efficiency()")
