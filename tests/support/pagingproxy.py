"""A reverse proxy that gives the real registry's ``tags/list`` the OCI spec's pagination.

distribution 2.8 (Debian's ``docker-registry``) ignores ``n`` and ``last`` on ``/v2/<name>/tags/list``
and answers every tag at once; distribution 3.0 and the OCI Distribution Spec v1.1 page it: at most
``n`` tags, lexically after ``last``, and a ``Link: </v2/<name>/tags/list?last=<tag>&n=<n>>; rel="next"``
header (relative, keys sorted as Go's ``url.Values.Encode`` writes them) while more remain. This proxy
does exactly that on top of the real answer, so regexplore's Link-following for tags runs against the
real registry's data. Every other request passes through unchanged.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import requests


class PagingProxy:
    """``with PagingProxy("http://127.0.0.1:5000") as p: p.url`` — counts ``tags_pages`` served."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.tags_pages = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                up = requests.get(proxy.upstream + parts.path, headers={
                    k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")})
                body, headers = up.content, {"Content-Type": up.headers.get("Content-Type", "")}
                if up.status_code == 200 and parts.path.endswith("/tags/list"):
                    q = parse_qs(parts.query)
                    doc = json.loads(body)
                    tags = sorted(doc.get("tags") or [])
                    if "last" in q:
                        tags = [t for t in tags if t > q["last"][0]]
                    if "n" in q:
                        n = int(q["n"][0])
                        more = len(tags) > n
                        tags = tags[:n]
                        if more and tags:
                            link = parts.path + "?" + urlencode(sorted({"last": tags[-1], "n": str(n)}.items()))
                            headers["Link"] = f'<{link}>; rel="next"'
                    proxy.tags_pages += 1
                    body = json.dumps({"name": doc.get("name"), "tags": tags}).encode()
                elif "Docker-Content-Digest" in up.headers:
                    headers["Docker-Content-Digest"] = up.headers["Docker-Content-Digest"]
                self.send_response(up.status_code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PagingProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
