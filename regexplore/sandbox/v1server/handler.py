"""The routes of the v1 index and registry roles, after the Python ``docker-registry``
(``docker_registry/{app,images,tags,index,search,toolkit}.py``) and the 2014 Docker docs."""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import time
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...protocol.v1.tarsum import PayloadChecksum, TarSum, TarSumError
from .store import Repo, Session, StoredImage, normalize
from .wire import Reply, WireHandler, api_error, redacted_request

__all__ = ["V1Handler"]

_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")  # the Python registry's RE_VALID_TAG
_AUTH_RE = re.compile(r'(\w+)[:=][\s"]?([^",]+)"?')  # toolkit._re_authorization
_CACHE_TTL = 31536000  # images.set_cache_headers: one year


_ROUTES: list[tuple[str, str, re.Pattern[str], str]] = [
    # (role, method, path regex, handler name); role "any" serves on both ports
    ("any", "GET", re.compile(r"^/v1/_ping$"), "ping"),
    ("any", "GET", re.compile(r"^/_ping$"), "ping"),
    ("index", "GET", re.compile(r"^/v1/search$"), "search"),
    ("index", "GET", re.compile(r"^/v1/users/?$"), "login"),
    ("index", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/images$"), "index_get_images"),
    ("index", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/images$"), "index_put_images"),
    ("registry", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "get_tag"),
    ("registry", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "put_tag"),
    ("registry", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags/(?P<tag>[^/]+)$"), "delete_tag"),
    ("registry", "GET", re.compile(r"^/v1/repositories/(?P<repo>.+?)/tags$"), "get_tags"),
    ("index", "PUT", re.compile(r"^/v1/repositories/(?P<repo>.+?)/?$"), "index_put_repository"),
    ("index", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/$"), "index_delete_repository"),
    ("registry", "DELETE", re.compile(r"^/v1/repositories/(?P<repo>.+?)/$"), "delete_repository"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/json$"), "get_image_json"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/ancestry$"), "get_ancestry"),
    ("registry", "GET", re.compile(r"^/v1/images/(?P<image>[^/]+)/layer$"), "get_layer"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/json$"), "put_image_json"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/layer$"), "put_layer"),
    ("registry", "PUT", re.compile(r"^/v1/images/(?P<image>[^/]+)/checksum$"), "put_checksum"),
]


class V1Handler(WireHandler):
    """One connection to either role: routes each request (:data:`_ROUTES`) to its ``h_*`` method."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        self.url_path = split.path
        self.body_consumed = False
        self.extra_headers: dict[str, Any] = {}
        self.token_repository: str | None = None  # one handler object serves a whole connection
        role = self.server.role
        self.record: dict[str, Any] = {"role": role, "method": method, "path": self.path,
                                       "headers": redacted_request(self.headers.items()), "status": None,
                                       "response_headers": {}}
        with self.app._lock:
            self.app.requests.append(self.record)
        try:
            # htpasswd in front of a standalone registry
            if role == "both" and self.app.users and self._basic_user() is None:
                raise Reply(401, {"error": "Requires authorization"},
                            {"WWW-Authenticate": 'Basic realm="docker-registry"'})
            for route_role, route_method, pattern, name in _ROUTES:
                if route_method != method or (route_role != "any" and role not in (route_role, "both")):
                    continue
                match = pattern.match(self.url_path)
                if match:
                    getattr(self, "h_" + name)(**match.groupdict())
                    return
            raise Reply(404, "<h1>Not Found</h1>", {"Content-Type": "text/html"}, raw=True)
        except Reply as reply:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- auth -------------------------------------------------------------------------------------
    def _basic_user(self) -> str | None:
        """The user of a valid Basic header; ``None`` if absent. Raises 401 if present but wrong."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", None  # type: ignore[assignment]
        expected = self.app.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password or ""):
            raise self._index_unauthorized()
        return user

    def _index_unauthorized(self) -> Reply:
        return api_error("Requires authorization", 401,
                         {"WWW-Authenticate": 'Basic realm="auth required",Token'})

    def _want_token(self) -> bool:
        return self.headers.get("X-Docker-Token", "").lower() == "true"

    def _index_headers(self, repository: str, access: str) -> dict[str, Any]:
        headers: dict[str, Any] = {"X-Docker-Endpoints": self.app._endpoints_header()}
        if self._want_token():
            tokens = self.app._issue_tokens(repository, access)
            headers["X-Docker-Token"] = tokens
            headers["WWW-Authenticate"] = tokens[0] if self.app.token_prefix else "Token " + tokens[0]
        return headers

    def _cookie_session(self) -> Session | None:
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get("session")
        if morsel is None:
            return None
        with self.app._lock:
            return self.app._sessions.get(morsel.value)

    def _require_token(self, repository: str | None = None) -> None:
        """toolkit.requires_auth for the registry role: session cookie, else a fresh index token.

        Raises
        ------
        Reply
            401 ``Requires authorization`` with ``WWW-Authenticate: Token``.
        """
        if self.app.standalone:
            return
        method = self.command
        session = self._cookie_session()
        if session is not None and _access_allows(session.access, method) and (
            repository is None or session.repository == repository
        ):
            return
        header = self.headers.get("Authorization", "")
        if header.split(" ")[0].lower() == "token":
            pairs = _AUTH_RE.findall(header)
            fields = dict(pairs)  # the Python server keeps the last value of each key
            signatures = [value for key, value in pairs if key == "signature"]
            with self.app._lock:
                for signature in signatures:
                    token = self.app._tokens.get(signature)
                    if token is None or (token.used and not self.app.token_reuse):
                        continue
                    if repository is not None and token.repository != repository:
                        continue
                    if not _access_allows(token.access, method):
                        continue
                    if fields.get("repository") and repository is not None and fields["repository"] != repository:
                        continue
                    token.used = True  # "Docker Hub will invalidate the token"
                    value = secrets.token_urlsafe(24)
                    self.app._sessions[value] = Session(token.repository, token.access)
                    self.extra_headers["Set-Cookie"] = f"session={value}; HttpOnly; Path=/"
                    self.token_repository = token.repository
                    return
        raise api_error("Requires authorization", 401, {"WWW-Authenticate": "Token"})

    def _authorized_repository(self) -> str | None:
        """The repository the request's token or session is for (``None`` if standalone)."""
        session = self._cookie_session()
        if session is not None:
            return session.repository
        return self.token_repository

    # -- both roles -------------------------------------------------------------------------------
    def h_ping(self) -> None:
        # app.py ping(): body {} ; X-Docker-Registry-Standalone: str(cfg.standalone is not False)
        raise Reply(200, {}, {"X-Docker-Registry-Standalone": self.app._ping_standalone_value()})

    # -- index role -------------------------------------------------------------------------------
    def h_search(self) -> None:
        term = self.query.get("q", [""])[0]
        with self.app._lock:
            results = [
                {"name": name, "description": repo.description}
                for name, repo in sorted(self.app._repos.items())
                if term.lower() in name.lower() and not repo.private
            ]
        raise Reply(200, {"query": term, "num_results": len(results), "results": results})

    def h_login(self) -> None:
        # hub_registry_spec "Login": valid 200, invalid 401
        if self._basic_user() is None:
            raise self._index_unauthorized()
        raise Reply(200, "OK")

    def h_index_get_images(self, repo: str) -> None:
        name = normalize(repo)
        user = self._basic_user()
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or (stored.private and user is None):
                if stored is not None:
                    raise self._index_unauthorized()
                raise api_error("images not found", 404)
            body = json.dumps(stored.images).encode()
        raise Reply(200, body, self._index_headers(name, "read"), raw=True)

    def h_index_put_repository(self, repo: str) -> None:
        name = normalize(repo)
        body = self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        if self.app.push_redirect and "redirected" not in self.query:
            with self.app._lock:
                first = name not in self.app._redirected
                self.app._redirected.add(name)
            if first:
                location = f"{self.app.index_url}/v1/repositories/{name}/?redirected=1"
                raise Reply(self.app.push_redirect, "", {"Location": location})
        images = self._image_list(body)
        with self.app._lock:
            stored = self.app._repos.setdefault(name, Repo())
            _merge_index_images(stored, images)
        raise Reply(200, "", self._index_headers(name, "write"))

    def h_index_put_images(self, repo: str) -> None:
        name = normalize(repo)
        body = self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        images = self._image_list(body)
        with self.app._lock:
            stored = self.app._repos.setdefault(name, Repo())
            _merge_index_images(stored, images, update_checksums=True)
        raise Reply(204, "", self._index_headers(name, "write"))

    def h_index_delete_repository(self, repo: str) -> None:
        name = normalize(repo)
        self._body()
        if self._basic_user() is None:
            raise self._index_unauthorized()
        with self.app._lock:
            if name not in self.app._repos:
                raise api_error("Repository not found", 404)
        raise Reply(202, "", self._index_headers(name, "delete"))

    def _image_list(self, body: bytes) -> list[dict[str, Any]]:
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            raise api_error("Error Decoding JSON", 400) from None
        if not isinstance(data, list) or not all(isinstance(i, dict) and "id" in i for i in data):
            raise api_error("Invalid data")
        return data

    # -- registry role: tags ----------------------------------------------------------------------
    def h_get_tags(self, repo: str) -> None:
        name = normalize(repo)
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or not stored.tags and not stored.images:
                raise api_error("Repository not found", 404)
            tags = dict(stored.tags)
        if self.app.tags_form == "dict":
            raise Reply(200, tags)
        layer = (lambda i: "") if self.app.tags_form == "list-empty" else (lambda i: i[:8])
        raise Reply(200, [{"layer": layer(i), "name": t} for t, i in tags.items()])

    def h_get_tag(self, repo: str, tag: str) -> None:
        name = normalize(repo)
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or tag not in stored.tags:
                raise api_error("Tag not found", 404)
            raise Reply(200, stored.tags[tag])

    def h_put_tag(self, repo: str, tag: str) -> None:
        name = normalize(repo)
        body = self._body()
        self._require_token(name)
        if not _TAG_RE.match(tag):
            raise api_error(f"Invalid tag name (must match {_TAG_RE.pattern})")
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            data = None
        if not data or not isinstance(data, str):
            raise api_error("Invalid data")
        with self.app._lock:
            if data not in self.app._images:
                raise api_error("Image not found", 404)
            self.app._repos.setdefault(name, Repo()).tags[tag] = data
        raise Reply(200, True)

    def h_delete_tag(self, repo: str, tag: str) -> None:
        name = normalize(repo)
        self._body()
        self._require_token(name)
        with self.app._lock:
            stored = self.app._repos.get(name)
            if stored is None or tag not in stored.tags:
                raise api_error(f"Tag not found: {tag}", 404)
            del stored.tags[tag]
        raise Reply(200, True)

    def h_delete_repository(self, repo: str) -> None:
        name = normalize(repo)
        self._body()
        self._require_token(name)
        with self.app._lock:
            if self.app._repos.pop(name, None) is None:
                raise api_error("Repository not found", 404)
        raise Reply(200, True)

    # -- registry role: images --------------------------------------------------------------------
    def _completed_image(self, image: str) -> StoredImage:
        with self.app._lock:
            stored = self.app._images.get(image)
        if stored is None:
            raise api_error("Image not found", 404)
        if stored.uploading:  # images.require_completion
            raise api_error("Image is being uploaded, retry later")
        return stored

    def _cache_headers(self) -> dict[str, Any]:
        # images.set_cache_headers (these responses carry no Pragma)
        expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + _CACHE_TTL))
        headers = {"Cache-Control": f"public, max-age={_CACHE_TTL}", "Expires": expires,
                   "Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT"}
        if "If-Modified-Since" in self.headers:
            raise Reply(304, None, headers)
        return headers

    def h_get_image_json(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        headers = self._cache_headers()
        if stored.layer is not None:
            headers["X-Docker-Size"] = str(len(stored.layer))
        if stored.checksums:
            headers[self.app.checksum_header] = stored.checksums
        raise Reply(200, stored.json, headers, raw=True)

    def h_get_ancestry(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        raise Reply(200, stored.ancestry, self._cache_headers())

    def h_get_layer(self, image: str) -> None:
        self._require_token()
        stored = self._completed_image(image)
        headers = self._cache_headers()
        headers["Content-Type"] = "application/octet-stream"
        if stored.layer is None:
            raise api_error("Image not found", 404)
        layer = stored.layer
        size = len(layer)
        byte_range = None
        if self.app.accept_ranges:
            headers["Accept-Ranges"] = "bytes"
            byte_range = _parse_bytes_range(self.headers.get("Range"))
        if byte_range is None:
            if size == 0:  # images._get_image_layer: an empty layer is 416 even without Range
                raise Reply(416, b"", headers, raw=True)
            self._send_layer(200, headers, layer)
            return
        if self.app.content_range == "rfc":
            self._send_rfc_range(headers, layer, byte_range)
            return
        start, end = byte_range
        if end == -1 and size:
            end = size  # images._get_image_layer: (start, layer_size), one past the last byte
        if start < 0 or end < 1 or end - start + 1 < 2:  # images._valid_bytes_range
            raise Reply(416, b"", headers, raw=True)
        headers["Content-Range"] = f"{start}-{end}/{size}"  # no "bytes " unit
        # Content-Length is the range's length; the storage reads what the file has
        self._send_layer(206, headers, layer[start:end + 1], length=end - start + 1)

    def _send_rfc_range(self, headers: dict[str, Any], layer: bytes, byte_range: tuple[int, int]) -> None:
        """An RFC 7233 answer to ``bytes=a-[b]``: 206 with ``bytes a-last/size``, or 416 with
        ``bytes */size`` when ``a`` is at or past the end."""
        size = len(layer)
        start, end = byte_range
        if start >= size or (end != -1 and end < start):
            raise Reply(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, raw=True)
        last = size - 1 if end == -1 else min(end, size - 1)
        headers["Content-Range"] = f"bytes {start}-{last}/{size}"
        self._send_layer(206, headers, layer[start:last + 1])

    def _send_layer(self, status: int, headers: dict[str, Any], body: bytes,
                    length: int | None = None) -> None:
        """Send a layer body; ``length`` is the ``Content-Length`` to announce (default: the body's).
        When the body is shorter the connection is closed after it (as a WSGI server does)."""
        length = len(body) if length is None else length
        all_headers = self._base_headers()
        all_headers.update(self.extra_headers)
        all_headers.update(headers)
        cut = None
        with self.app._lock:
            if self.app.drop_layer_after is not None and self.app._drops_done < self.app.drop_layer_times:
                self.app._drops_done += 1
                cut = self.app.drop_layer_after
        self._log_response(status, {**all_headers, "Content-Length": length})
        self.send_response(status)
        for key, value in all_headers.items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(length))
        if length > len(body):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut is not None and cut < len(body):
            body = body[:cut]
        elif length <= len(body):
            self.wfile.write(body)
            return
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def h_put_image_json(self, image: str) -> None:
        body = self._body()
        self._require_token()
        try:
            data = json.loads(body.decode("utf8"))
        except ValueError:
            data = None
        if not data or not isinstance(data, dict):
            raise api_error("Invalid JSON")
        if "id" not in data:
            raise api_error("Missing key `id' in JSON")
        if image != data["id"]:
            raise api_error("JSON data contains invalid id")
        repository = self._authorized_repository()
        with self.app._lock:
            if repository is not None and not self.app.standalone:  # images.check_images_list
                listed = [i["id"] for i in self.app._repos.get(repository, Repo()).images]
                if image not in listed:
                    raise api_error("This image does not belong to the repository")
            parent = data.get("parent")
            if parent and parent not in self.app._images:
                raise api_error("Image depends on a non existing parent")
            existing = self.app._images.get(image)
            if existing is not None and not existing.uploading:
                raise api_error("Image already exists", 409)
            ancestry = [image] + (self.app._images[parent].ancestry if parent else [])
            self.app._images[image] = StoredImage(json=body, ancestry=ancestry, uploading=True)
        raise Reply(200, True)

    def h_put_layer(self, image: str) -> None:
        self._require_token()
        with self.app._lock:
            stored = self.app._images.get(image)
        if stored is None:
            raise api_error("Image not found", 404)
        if stored.layer is not None and not stored.uploading:
            raise api_error("Image already exists", 409)
        payload = PayloadChecksum(stored.json)
        summer: TarSum | None = TarSum(decompress=True) if self.app.verify_tarsum else None
        parts = []
        try:
            for chunk in self._body_chunks():
                parts.append(chunk)
                payload.update(chunk)
                if summer is not None:
                    try:
                        summer.update(chunk)
                    except TarSumError:
                        summer = None  # not a tar: the Python server just disabled TarSum
        except (ConnectionError, ValueError):
            self.close_connection = True
            return  # client went away mid-upload: nothing stored, mark stays
        tarsum_value = None
        if summer is not None:
            try:
                tarsum_value = summer.sum(stored.json)
            except TarSumError:
                tarsum_value = None
        with self.app._lock:
            stored.layer = b"".join(parts)
            stored.checksums = [payload.checksum]
            stored.tarsum = tarsum_value
            stored.uploading = True
        raise Reply(200, True)

    def h_put_checksum(self, image: str) -> None:
        self._body()
        self._require_token()
        checksum = self.headers.get("X-Docker-Checksum-Payload")
        if checksum is None:
            raise api_error("X-Docker-Checksum-Payload not set.  If you are using the Docker "
                         "daemon, you should upgrade to version 0.10 or later", 412)
        if not checksum:
            raise api_error("Missing Image's checksum")
        with self.app._lock:
            stored = self.app._images.get(image)
            if stored is None:
                raise api_error("Image not found", 404)
            if not stored.uploading or stored.layer is None:
                raise api_error("Cannot set this image checksum", 409)
            if checksum not in stored.checksums:
                raise api_error("Checksum mismatch")
            tarsum_header = self.headers.get("X-Docker-Checksum")
            if tarsum_header and stored.tarsum is not None and tarsum_header != stored.tarsum:
                raise api_error("Checksum mismatch")
            stored.uploading = False
        raise Reply(200, True)


def _access_allows(access: str, method: str) -> bool:
    """toolkit.check_token: write ⇒ POST/PUT, read ⇒ GET, delete ⇒ DELETE."""
    if access == "write":
        return method in ("POST", "PUT")
    if access == "read":
        return method in ("GET", "HEAD")
    if access == "delete":
        return method == "DELETE"
    return False


def _merge_index_images(repo: Repo, images: list[dict[str, Any]], *, update_checksums: bool = False) -> None:
    """index.update_index_images: keep ``id`` and ``checksum``; a known checksum is not dropped."""
    by_id = {i["id"]: i for i in repo.images}
    for item in images:
        entry = by_id.setdefault(item["id"], {"id": item["id"]})
        if "checksum" in item and (update_checksums or "checksum" not in entry):
            entry["checksum"] = item["checksum"]
    repo.images = list(by_id.values())


def _parse_bytes_range(header: str | None) -> tuple[int, int] | None:
    """images._parse_bytes_range: ``bytes=a-b`` or ``bytes=a-``; anything else is ignored."""
    if not header or not header.startswith("bytes="):
        return None
    parts = header[6:].split("-")
    if len(parts) != 2:
        return None
    try:
        start = int(parts[0])
        end = int(parts[1]) if parts[1] != "" else -1
    except ValueError:
        return None
    return start, end
