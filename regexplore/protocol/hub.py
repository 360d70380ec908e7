"""Docker Hub's own endpoints: search and tag metadata (docs/protocol.md §1.3, §4).

These are not registry (OCI Distribution) calls: they go to ``index.docker.io`` (the v1 search
that ``docker search`` still uses) and ``hub.docker.com`` (the Hub web API), through a
:class:`~regexplore.http.transport.Transport` of their own that carries **no registry credentials**.

Everything returns plain rows (dicts) wrapped in a :class:`HubResult`; the ``Registry`` facade
turns them into DataFrames (tables ``search`` and ``tags_details`` in :mod:`regexplore.model.frames`).
This module never imports pandas.

>>> hub = HubClient()                                  # doctest: +SKIP
>>> hub.search("ubuntu", limit=5).rows[0]["name"]      # doctest: +SKIP
'ubuntu'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RegistryError, load_json
from ..http.transport import MiB, RetryPolicy, Transport
from .v2 import PagedListing

__all__ = [
    "HUB_URL",
    "INDEX_URL",
    "HubClient",
    "HubResult",
    "parse_v1_search",
    "parse_v2_search",
    "parse_hub_tags",
    "parse_web_rate_limit",
    "filter_catalog_search",
    "hub_repository",
]

HUB_URL = "https://hub.docker.com"
INDEX_URL = "https://index.docker.io"
#: the largest page Docker's client asks of v1 search (``n`` 1..100), and the Hub tags page size
#: independent clients use (protocol.md §4: "page_size max is 100", UNVERIFIED officially)
MAX_PAGE = 100
_BODY_CAP = 16 * MiB


@dataclass
class HubResult:
    """Rows from a Hub endpoint and what to say about them.

    ``rows``: list of dicts (the ``search`` or ``tags_details`` columns, plus extras);
    ``source``: the endpoint that answered (``"index.docker.io/v1/search"``,
    ``"hub.docker.com/v2/search/repositories"``, ``"hub.docker.com/v2/repositories/…/tags"``,
    ``"catalog"``); ``total``: the server's count of matches (``num_results`` / ``count``), None
    when it did not say; ``notes``: human-readable remarks (a fallback and why, tags whose
    ``images`` were empty, …).
    """

    rows: list[dict[str, Any]]
    source: str
    total: int | None = None
    notes: list[str] = field(default_factory=list)

    def attrs(self) -> dict[str, Any]:
        """The metadata the facade puts in ``df.attrs``."""
        return {"source": self.source, "total": self.total, "notes": list(self.notes)}


# --------------------------------------------------------------------------- pure parsers
def int_or_none(value: Any) -> int | None:
    """``int(value)`` for ints and digit strings (``"1"``), None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _search_row(name: Any, description: Any, stars: Any, official: Any, automated: Any,
                pulls: Any) -> dict[str, Any]:
    return {
        "name": name if isinstance(name, str) else None,
        "description": description if isinstance(description, str) else None,
        "stars": int_or_none(stars),
        "official": _bool_or_none(official),
        "automated": _bool_or_none(automated),
        "pulls": int_or_none(pulls),
    }


def parse_v1_search(doc: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and paging facts from a v1 ``/v1/search`` body (every shape in protocol.md §1.3).

    Returns ``(rows, meta)``: rows ``{name, description, stars, official, automated, pulls}``;
    ``meta`` ``{total, page, num_pages, page_size}`` as ints or None. Accepts ``page`` as a
    string (2015) or an int (2022); ``is_automated`` and/or the older ``is_trusted``
    (automated = ``is_automated`` when present, else ``is_trusted``); ``pull_count`` optional
    (None when absent); ``description`` null (the Python registry) or ``""``. Raises
    :class:`ValueError` when ``doc`` is not a search answer at all.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("results", []), list):
        raise ValueError("not a v1 search answer (no 'results' list)")
    rows = []
    for r in doc.get("results") or []:
        if not isinstance(r, dict):
            continue
        automated = r.get("is_automated") if "is_automated" in r else r.get("is_trusted")
        rows.append(_search_row(r.get("name"), r.get("description"), r.get("star_count"),
                                r.get("is_official"), automated, r.get("pull_count")))
    meta = {
        "total": int_or_none(doc.get("num_results")),
        "page": int_or_none(doc.get("page")),
        "num_pages": int_or_none(doc.get("num_pages")),
        "page_size": int_or_none(doc.get("page_size")),
    }
    return rows, meta


def parse_v2_search(doc: Any) -> tuple[list[dict[str, Any]], int | None, str | None]:
    """Rows, ``count`` and the ``next`` URL from Hub's ``/v2/search/repositories/`` body.

    ``repo_name`` → name (the bare name for official images, ``"ubuntu"``), ``short_description``,
    ``star_count``, ``pull_count``, ``is_official``, ``is_automated``. ``next`` is an absolute
    URL or null/""; ``previous`` may be ``""`` or null and is ignored. Raises
    :class:`ValueError` for a body without a ``results`` list.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError("not a Hub search answer (no 'results' list)")
    rows = [
        _search_row(r.get("repo_name"), r.get("short_description"), r.get("star_count"),
                    r.get("is_official"), r.get("is_automated"), r.get("pull_count"))
        for r in doc["results"] if isinstance(r, dict)
    ]
    nxt = doc.get("next")
    return rows, int_or_none(doc.get("count")), nxt if isinstance(nxt, str) and nxt else None


def _platform_of(image: Mapping[str, Any]) -> str | None:
    os_, arch = image.get("os"), image.get("architecture")
    if not os_ and not arch:
        return None
    s = f"{os_ or ''}/{arch or ''}"
    if image.get("variant"):
        s += f"/{image['variant']}"
    return s


def parse_hub_tags(doc: Any, repository: str) -> tuple[list[dict[str, Any]], int | None, str | None]:
    """Rows, ``count`` and ``next`` from Hub's ``/v2/repositories/<ns>/<repo>/tags/`` body.

    One row per tag with the ``tags_details`` columns — ``repository``, ``tag``, ``digest``,
    ``media_type``, ``size`` (Hub's ``full_size``: one platform's size, amd64's when there is
    one, not a sum), ``created`` (Hub's ``last_updated``: when the tag was last pushed, an
    RFC 3339 string), ``os`` / ``architecture`` (linux/amd64 if listed, else the first image),
    ``platforms`` (``os/arch[/variant]`` per image) — plus ``images`` (per-platform dicts:
    digest, os, architecture, variant, os_version, size, status, last_pushed, last_pulled,
    platform), ``images_missing`` (True when Hub sent no or an empty ``images``: the 2016 shape,
    or Hub's Aug 2025 ``"images": []``; the caller should read the registry manifest instead,
    and ``platforms`` is then None, never a wrong empty list), ``tag_status``,
    ``tag_last_pulled``, ``tag_last_pushed``. Raises :class:`ValueError` for a body without a
    ``results`` list.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError("not a Hub tags answer (no 'results' list)")
    rows = []
    for t in doc["results"]:
        if not isinstance(t, dict):
            continue
        images = []
        for im in t.get("images") or []:
            if not isinstance(im, dict):
                continue
            images.append({
                "digest": im.get("digest"),
                "os": im.get("os"),
                "architecture": im.get("architecture"),
                "variant": im.get("variant") or None,
                "os_version": im.get("os_version") or None,
                "size": int_or_none(im.get("size")),
                "status": im.get("status"),
                "last_pushed": im.get("last_pushed"),
                "last_pulled": im.get("last_pulled"),
                "platform": _platform_of(im),
            })
        default = next((im for im in images if im["os"] == "linux" and im["architecture"] == "amd64"),
                       images[0] if images else None)
        rows.append({
            "repository": repository,
            "tag": t.get("name"),
            "digest": t.get("digest") or None,
            "media_type": t.get("media_type") or None,
            "size": int_or_none(t.get("full_size")),
            "created": t.get("last_updated") or None,
            "os": default["os"] if default else None,
            "architecture": default["architecture"] if default else None,
            "platforms": [im["platform"] for im in images if im["platform"]] if images else None,
            "images": images,
            "images_missing": not images,
            "tag_status": t.get("tag_status"),
            "tag_last_pulled": t.get("tag_last_pulled"),
            "tag_last_pushed": t.get("tag_last_pushed"),
        })
    nxt = doc.get("next")
    return rows, int_or_none(doc.get("count")), nxt if isinstance(nxt, str) and nxt else None


def parse_web_rate_limit(headers: Mapping[str, str]) -> dict[str, int | None] | None:
    """Hub web API rate-limit headers (``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
    ``X-RateLimit-Reset``, ``Retry-After``; protocol.md §4) as ints, or None when the response
    carried none of them. ``headers`` is case-insensitive if it is a ``requests`` header dict."""
    names = {"limit": "X-RateLimit-Limit", "remaining": "X-RateLimit-Remaining",
             "reset": "X-RateLimit-Reset", "retry_after": "Retry-After"}
    found = {k: headers.get(h) for k, h in names.items()}
    if all(v is None for v in found.values()):
        return None
    return {k: int_or_none(v) for k, v in found.items()}


def hub_repository(repo: str) -> str:
    """``ns/name`` as the Hub API wants it: ``ubuntu`` → ``library/ubuntu``; a leading
    ``docker.io/`` is dropped. Raises :class:`ValueError` for an empty name."""
    name = repo.strip().strip("/")
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/", "registry.hub.docker.com/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    name = name.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if not name:
        raise ValueError("empty repository name")
    return name if "/" in name else f"library/{name}"


def filter_catalog_search(names: Iterable[str], term: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Search for registries without a search API: the catalog names containing every
    whitespace-separated word of ``term`` (case-insensitive), in catalog order, as ``search``
    rows (only ``name`` is known; the other columns are None). An empty term matches all."""
    words = [w.lower() for w in term.split()]
    out: list[dict[str, Any]] = []
    for name in names:
        low = name.lower()
        if all(w in low for w in words):
            out.append(_search_row(name, None, None, None, None, None))
            if limit is not None and len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------- the client
class HubClient:
    """Docker Hub's search and tag-metadata endpoints over a transport without credentials.

    Parameters
    ----------
    hub_url : the Hub web API (``https://hub.docker.com``).
    index_url : the v1 index that serves ``/v1/search`` (``https://index.docker.io``).
    transport : a :class:`Transport` to use (default: a new one, ``auth=None``, 2 tries per
        request so a failing v1 search falls back quickly).
    timeout : seconds per connect / read for the default transport.
    """

    def __init__(self, *, hub_url: str = HUB_URL, index_url: str = INDEX_URL,
                 transport: Transport | None = None, timeout: float = 30.0) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.index_url = index_url.rstrip("/")
        self.transport = transport or Transport(
            self.hub_url, auth=None, timeout=timeout, pool_size=4,
            retry=RetryPolicy(attempts=2, backoff=0.25, max_sleep=2.0, budget=5.0))
        #: the Hub web API's rate-limit headers as last seen (:func:`parse_web_rate_limit`), or None
        self.web_rate_limit: dict[str, int | None] | None = None

    def __repr__(self) -> str:
        return f"HubClient({self.hub_url!r}, index={self.index_url!r})"

    def close(self) -> None:
        self.transport.close()

    def _get_json(self, url: str, *, params: Any = None, headers: Mapping[str, str] | None = None,
                  what: str) -> Any:
        """GET ``url`` and parse JSON; notes web rate-limit headers. Raises the
        :class:`RegistryError` tree, or :class:`RegistryError` for a body that is not JSON."""
        resp = self.transport.request("GET", url, params=params, headers=headers,
                                      max_bytes=_BODY_CAP, what=what)
        self._note_rate_limit(resp.headers)
        try:
            return load_json(resp.content, what, url=resp.url)
        except ValueError:
            raise RegistryError(f"{what}: the answer is not JSON", status=resp.status_code,
                                url=resp.url) from None

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        parsed = parse_web_rate_limit(headers)
        if parsed is not None:
            self.web_rate_limit = parsed

    # ----------------------------------------------------------------- search
    def search(self, term: str, limit: int = 25) -> HubResult:
        """Search Docker Hub like ``docker search``: ``index.docker.io/v1/search`` first; if that
        fails (404, 5xx, connection, a body that is not a search answer) Hub's
        ``/v2/search/repositories/``, with the reason in ``notes``. Returns at most ``limit``
        rows. Raises the v2 :class:`RegistryError` when both fail (the v1 reason added as a
        note), :class:`ValueError` for ``limit`` < 1."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        try:
            return self.search_v1(term, limit)
        except (RegistryError, ValueError) as v1_error:
            reason = f"v1 search failed ({v1_error}); used hub.docker.com/v2/search instead"
        try:
            result = self.search_v2(term, limit)
        except RegistryError as exc:
            exc.add_note(reason)  # shown with the traceback; str(exc) stays the v2 error
            raise
        result.notes.insert(0, reason)
        return result

    def search_v1(self, term: str, limit: int = 25) -> HubResult:
        """``GET <index>/v1/search?q=<term>&n=<n>`` with ``X-Docker-Token: true`` (what Docker's
        client sends; protocol.md §1.2), paging with ``page`` when ``limit`` is over 100, within
        the bounds of :class:`~regexplore.protocol.v2.PagedListing`. Raises :class:`RegistryError` (any
        failure; :class:`ResponseTooLarge` past those bounds) or :class:`ValueError` (not a search
        answer)."""
        n = max(1, min(limit, MAX_PAGE))
        rows: list[dict[str, Any]] = []
        total = None
        page = 1
        bounds = PagedListing("v1 search")
        while True:
            params: list[tuple[str, Any]] = [("q", term), ("n", n)]
            if page > 1:
                params.append(("page", page))
            doc = self._get_json(f"{self.index_url}/v1/search", params=params,
                                 headers={"X-Docker-Token": "true"}, what="v1 search")
            got, meta = parse_v1_search(doc)
            bounds.page(r["name"] for r in got)
            total = meta["total"] if meta["total"] is not None else total
            rows.extend(got)
            num_pages = meta["num_pages"]
            if len(rows) >= limit or not got or len(got) < n or num_pages is None or page >= num_pages:
                break
            bounds.follow()
            page += 1
        return HubResult(rows[:limit], "index.docker.io/v1/search", total)

    def search_v2(self, term: str, limit: int = 25, *, page_size: int | None = None) -> HubResult:
        """``GET <hub>/v2/search/repositories/?query=<term>&page_size=<n>``, following the
        absolute ``next`` URL until ``limit`` rows (``page_size`` defaults to ``limit``, at most
        100), within the bounds of :class:`~regexplore.protocol.v2.PagedListing`. Raises
        :class:`RegistryError` (:class:`ResponseTooLarge` past those bounds)."""
        n = max(1, min(page_size or limit, MAX_PAGE))
        url: str | None = f"{self.hub_url}/v2/search/repositories/"
        params: Any = [("query", term), ("page_size", n)]
        rows: list[dict[str, Any]] = []
        total = None
        bounds = PagedListing("Hub search")
        while url:
            doc = self._get_json(url, params=params, what="Hub search")
            try:
                got, count, url = parse_v2_search(doc)
            except ValueError as exc:
                raise RegistryError(f"Hub search: {exc}") from None
            bounds.page(r["name"] for r in got)
            total = count if count is not None else total
            rows.extend(got)
            params = None  # ``next`` carries the query
            if len(rows) >= limit or not got:
                break
            bounds.follow(url)
        return HubResult(rows[:limit], "hub.docker.com/v2/search/repositories", total)

    # ----------------------------------------------------------------- tag metadata
    def tags(self, repo: str, *, limit: int | None = None, page_size: int | str | None = "auto") -> HubResult:
        """Tag metadata of ``repo`` (``ubuntu`` or ``library/ubuntu``) from
        ``<hub>/v2/repositories/<ns>/<repo>/tags/?page_size=<n>``, following ``next`` until the
        last page or ``limit`` rows. Rows: see :func:`parse_hub_tags`; ``notes`` name the tags
        whose ``images`` were empty (read their manifests instead). ``page_size``: ``"auto"``
        (``limit``, at most 100), an int, or None to send none (Hub's default). Pages are followed
        within the bounds of :class:`~regexplore.protocol.v2.PagedListing`. Raises :class:`NotFound` for an
        unknown repository, :class:`ResponseTooLarge` past those bounds, :class:`RegistryError`
        otherwise."""
        name = hub_repository(repo)
        if page_size == "auto":
            page_size = max(1, min(limit or MAX_PAGE, MAX_PAGE))
        url: str | None = f"{self.hub_url}/v2/repositories/{name}/tags/"
        params: Any = [("page_size", int(page_size))] if page_size else None
        rows: list[dict[str, Any]] = []
        total = None
        bounds = PagedListing(f"Hub tags of {name}")
        while url:
            doc = self._get_json(url, params=params, what=f"Hub tags of {name}")
            try:
                got, count, url = parse_hub_tags(doc, name)
            except ValueError as exc:
                raise RegistryError(f"Hub tags of {name}: {exc}") from None
            bounds.page(r["tag"] for r in got)
            total = count if count is not None else total
            rows.extend(got)
            params = None
            if (limit is not None and len(rows) >= limit) or not got:
                break
            bounds.follow(url)
        if limit is not None:
            rows = rows[:limit]
        result = HubResult(rows, f"hub.docker.com/v2/repositories/{name}/tags", total)
        missing = [r["tag"] for r in rows if r["images_missing"]]
        if missing:
            shown = ", ".join(str(t) for t in missing[:10]) + (" …" if len(missing) > 10 else "")
            result.notes.append(f"Hub listed no images for {len(missing)} tag(s) ({shown}): "
                                "platforms must come from the registry manifest")
        return result
