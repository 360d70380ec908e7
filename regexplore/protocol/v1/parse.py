"""Pure helpers of the v1 protocol: checks of ids, tags and repository names, and parsers of the
index's and registries' answers (tags, image lists, endpoints, image JSON, ``Content-Range``,
``X-Docker-Token``). Nothing here sends a request.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests

from ...errors import InvalidReference, RegistryError, load_json
from ...http.redact import Secret, shown
from ...model.oci import parse_time
from ..hub import int_or_none
from .results import ImageJSON

__all__ = [
    "CHECKSUM_HEADERS",
    "answer_json",
    "check_image_id",
    "check_image_json",
    "check_tag",
    "header_values",
    "history_row",
    "int_or_none",
    "is_image_id",
    "normalize_repository",
    "parse_content_range",
    "parse_endpoints",
    "parse_repository_images",
    "parse_standalone",
    "parse_tags",
    "read_image_json",
    "token_values",
]

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")  #: a v1 image id (protocol.md §1.3); \Z: "$" would allow a final "\n"
_ID_PREFIX = re.compile(r"[0-9a-f]{0,64}\Z")  #: the Hub's list-form tags: an 8-hex prefix, or ""
#: a v1 tag: the Python registry's RE_VALID_TAG and Docker's ``[\w][\w.-]{0,127}`` (ASCII ``\w``)
_V1_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
#: a v1 repository name, ``[namespace/]name`` with the characters of Docker 1.3's
#: ``validateRepositoryName`` (namespace ``[a-z0-9_-]``, name ``[a-z0-9_.-]``), the name not starting
#: with a dot (so never ``.`` or ``..``)
_V1_NAME = re.compile(r"(?:[a-z0-9_-]+/)?[a-z0-9_-][a-z0-9_.-]*\Z")
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?\Z")
_CONTENT_RANGE = re.compile(r"^\s*(?:bytes\s+)?(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
#: where registries put the layer checksums in the answer to ``GET /v1/images/<id>/json``, in the
#: order they are read: the Python registry's name, the older name (its 2013-14 versions and the
#: 2014 docs), and the push header's name (tolerated)
CHECKSUM_HEADERS = ("X-Docker-Payload-Checksum", "X-Docker-Checksum", "X-Docker-Checksum-Payload")


def is_image_id(value: Any) -> bool:
    """True when ``value`` is a v1 image id (64 lowercase hex, protocol.md §1.3)."""
    return isinstance(value, str) and bool(_HEX64.match(value))


def normalize_repository(name: str) -> str:
    """``redis`` → ``library/redis``; ``/ns/repo/`` → ``ns/repo`` (Docker 1.3 and the Python
    registry's ``parse_repository_name``). Raises :class:`~regexplore.errors.InvalidReference` (a
    ``ValueError``) for an empty name or one that is not a v1 name (``[namespace/]name`` of
    ``[a-z0-9_.-]``, see :data:`_V1_NAME`): it becomes part of every v1 URL."""
    parts = name.strip().strip("/")
    if not parts:
        raise InvalidReference("empty repository name")
    if not _V1_NAME.match(parts):
        raise InvalidReference(f"not a v1 repository name ([namespace/]name of a-z 0-9 _ . -): {shown(name)}")
    return parts if "/" in parts else f"library/{parts}"


def check_image_id(value: Any, what: str) -> str:
    """``value`` if it is a v1 image id (64 lowercase hex: it becomes a URL part and a file name);
    else ``ValueError`` naming ``what``."""
    if not is_image_id(value):
        raise ValueError(f"{what}: not a v1 image id (64 lowercase hex): {shown(value)}")
    return value


def check_tag(value: Any, what: str = "tag") -> str:
    """``value`` if it is a v1 tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``); else ``ValueError``."""
    if not isinstance(value, str) or not _V1_TAG.match(value):
        raise ValueError(f"{what}: not a v1 tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}): {shown(value)}")
    return value


def parse_standalone(value: str | None) -> bool:
    """Docker 1.3's reading of ``X-Docker-Registry-Standalone``: absent or empty → True;
    ``"true"`` (any case) or ``"1"`` → True; anything else (``"False"``, ``"mirror"``) → False."""
    if value is None or value.strip() == "":
        return True
    return value.strip().lower() in ("true", "1")


def parse_endpoints(value: str | None, index_url: str) -> list[str]:
    """Registry base URLs (``scheme://host[:port]``) from ``X-Docker-Endpoints``.

    The value is a comma list of ``host[:port]`` with any whitespace around entries; each gets
    the scheme of ``index_url`` (Docker 1.3 ``buildEndpointsList``). Absent or empty → the
    index itself. Duplicates are dropped, order kept.
    """
    scheme = urlsplit(index_url).scheme or "https"
    out: list[str] = []
    for item in (value or "").split(","):
        host = item.strip()
        if not host:
            continue
        if "://" in host:  # tolerate a full URL (some proxies rewrite the header)
            p = urlsplit(host)
            host = p.netloc
        host = host.rstrip("/")
        m = _HOST_PORT.match(host)
        if not m or (m.group(1) and not 0 < int(m.group(1)) < 65536):
            raise ValueError(f"X-Docker-Endpoints entry {shown(item.strip())} is not host[:port]")
        base = f"{scheme}://{host}"
        if base not in out:
            out.append(base)
    if not out:
        p = urlsplit(index_url)
        out.append(f"{p.scheme}://{p.netloc}")
    return out


def parse_tags(doc: Any) -> dict[str, str]:
    """``{tag: image id}`` from a v1 tags body in either historical form.

    Dict form (registry spec, Python registry): ``{"latest": "<64-hex id>"}``. List form (Docker
    Hub): ``[{"layer": "<8-hex id prefix or \\"\\">", "name": "<tag>"}]`` — the value is then the
    prefix as sent (``""`` when the Hub left it empty). Raises ``ValueError`` for anything else,
    and for a tag or an id (prefix) that is not one (:func:`check_tag`, :func:`check_image_id`).
    """
    if isinstance(doc, dict):
        return {check_tag(k): check_image_id(v, f"tag {k}") for k, v in doc.items()}
    if isinstance(doc, list):
        out: dict[str, str] = {}
        for item in doc:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ValueError(f"not a v1 tag entry: {shown(item)}")  # noqa: TRY004 (callers map ValueError)
            layer = item.get("layer")
            layer = layer if isinstance(layer, str) else ""
            if not _ID_PREFIX.match(layer):
                raise ValueError(f"tag {shown(item['name'])}: not a v1 image id prefix: {shown(layer)}")
            out[check_tag(item["name"])] = layer
        return out
    raise ValueError("not a v1 tags answer (neither an object nor a list)")


def parse_repository_images(doc: Any) -> list[dict[str, str | None]]:
    """The index's image list ``[{"id", "checksum"[, "Tag"]}]`` → ``[{id, checksum, tag}]``.

    ``checksum`` is None when empty (Docker Hub 2015 sent ``""`` everywhere); ``tag`` comes from
    the 2013 capital-T ``Tag`` (or ``tag``), None when absent. Raises ``ValueError`` when the
    body is not a list of objects with an ``id``, or for an id or tag that is not a v1 one.
    """
    if not isinstance(doc, list):
        raise ValueError("not a v1 repository image list")  # noqa: TRY004 (callers map ValueError)
    out: list[dict[str, str | None]] = []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValueError(f"not a v1 image entry: {shown(item)}")  # noqa: TRY004 (callers map ValueError)
        image_id = check_image_id(item["id"], "image entry")
        tag = item.get("Tag", item.get("tag"))
        tag = check_tag(tag, f"tag of image {image_id[:12]}") if isinstance(tag, str) and tag else None
        out.append({"id": image_id, "checksum": item.get("checksum") or None, "tag": tag})
    return out


def check_image_json(doc: dict[str, Any], image_id: str) -> None:
    """Raise ``ValueError`` unless image JSON ``doc`` is about ``image_id`` (its ``id``, when
    present) and names a v1 image id as its ``parent`` (when set)."""
    if "id" in doc and doc["id"] != image_id:
        raise ValueError(f"its id {shown(doc['id'])} is not the image asked for")
    if doc.get("parent") not in (None, ""):
        check_image_id(doc["parent"], "its parent")


def _cmd_text(container_config: Any) -> str:
    cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return str(cmd) if cmd else ""


def history_row(step: int, doc: dict[str, Any], size_header: int | None = None) -> dict[str, Any]:
    """One ``history`` row (plus ``id`` and ``parent``) from a v1 image JSON.

    ``created_by`` is ``container_config.Cmd`` joined by spaces (Docker 1.3 ``graph/history.go``;
    ``""`` for imports whose Cmd is null); ``size`` is the registry's ``X-Docker-Size`` (bytes of
    the stored layer) when given and non-negative, else the JSON's ``Size``, else None. Every v1
    image has its own layer, so ``empty_layer`` is False; v1 has no digests (``layer_digest`` and
    ``diff_id`` are None).
    """
    size = size_header if size_header is not None and size_header >= 0 else int_or_none(doc.get("Size"))
    return {
        "step": step,
        "created": parse_time(doc.get("created")),
        "created_by": _cmd_text(doc.get("container_config")),
        "empty_layer": False,
        "size": size,
        "layer_digest": None,
        "diff_id": None,
        "comment": doc.get("comment") or "",
        "id": doc.get("id"),
        "parent": doc.get("parent") or None,
    }


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(start, end, total)`` from ``Content-Range``, with or without the ``bytes `` unit (the
    Python registry omits it); total None for ``*``. None when absent or unreadable."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _header_lines(resp: requests.Response, name: str) -> list[str]:
    """Every non-blank ``name`` header line of ``resp``, each kept whole (from the raw urllib3
    headers when there are some; else the merged value ``requests`` keeps)."""
    raw = getattr(resp, "raw", None)
    headers = getattr(raw, "headers", None)
    lines: list[str] = []
    if headers is not None and hasattr(headers, "getlist"):
        lines = [v for v in headers.getlist(name) if v and v.strip()]
    if not lines and resp.headers.get(name):
        lines = [resp.headers[name]]
    return lines


def token_values(resp: requests.Response) -> list[str]:
    """Every ``X-Docker-Token`` header of a response, each kept whole (tokens contain commas, so
    a merged header value cannot be split) and held as a :class:`~regexplore.http.redact.Secret`;
    a leading ``Token `` (the Python standalone index's ``Token signature=…``) is dropped."""
    out = []
    for v in _header_lines(resp, "X-Docker-Token"):
        v = v.strip()
        if v[:6].lower() == "token ":
            v = v[6:].strip()
        out.append(Secret(v))
    return out


def header_values(resp: requests.Response, name: str) -> list[str]:
    """Every comma-separated value of every ``name`` header (RFC 7230 §3.2.2: repeated headers
    and one comma-joined header are the same; checksums never contain a comma)."""
    return [x.strip() for line in _header_lines(resp, name) for x in line.split(",") if x.strip()]


def answer_json(resp: requests.Response, what: str) -> Any:
    """The JSON of ``resp``; :class:`RegistryError` naming ``what`` when it is not JSON or is nested
    too deeply (:func:`~regexplore.errors.load_json`)."""
    try:
        return load_json(resp.content or b"null", what, url=resp.url)
    except ValueError:
        raise RegistryError(f"{what}: the answer is not JSON", status=resp.status_code, url=resp.url) from None

def read_image_json(resp: requests.Response, image_id: str, endpoint: str) -> ImageJSON:
    """The :class:`ImageJSON` of a registry's answer to ``GET /v1/images/<id>/json`` from
    ``endpoint``: the JSON (checked with :func:`check_image_json`), ``X-Docker-Size`` and every
    checksum of :data:`CHECKSUM_HEADERS`. Raises :class:`RegistryError` when the JSON is not an
    object about ``image_id`` or ``X-Docker-Size`` is not an integer (as in Docker 1.3)."""
    doc = answer_json(resp, f"image json of {image_id[:12]}")
    if not isinstance(doc, dict):
        raise RegistryError(f"image json of {image_id[:12]} is not an object", url=resp.url)
    try:
        check_image_json(doc, image_id)
    except ValueError as exc:
        raise RegistryError(f"image {image_id[:12]}: {exc}", url=resp.url) from None
    size_text = resp.headers.get("X-Docker-Size")
    size = None
    if size_text is not None:
        size = int_or_none(size_text)
        if size is None:
            raise RegistryError(f"X-Docker-Size is not an integer: {shown(size_text, 40)}", url=resp.url)
        if size < 0:
            size = None
    # every header counts: a registry may send a tarsum in one and the payload checksum in
    # another (the payload checksum can always be computed, a tarsum not for every layer)
    by_value: dict[str, str] = {}
    for header in CHECKSUM_HEADERS:
        for value in header_values(resp, header):
            by_value.setdefault(value, header)
    sums = list(by_value)
    return ImageJSON(image_id, resp.content, doc, size, sums, endpoint, by_value[sums[0]] if sums else None,
                     by_value)
