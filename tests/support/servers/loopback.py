"""The one way the test servers run: a ``ThreadingHTTPServer`` on a free loopback port in a daemon thread.

:func:`serve` / :func:`stop` for a bare handler class; :class:`LoopbackServer` for a server object with state
(a token server, a fault proxy, a store): it gives ``start()`` / ``stop()``, ``with``, and ``url``.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any


def serve(handler: type, bind: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``handler`` (a ``BaseHTTPRequestHandler`` class) on a free port of ``bind`` in a daemon
    thread; the server's ``url`` attribute is ``http://bind:port``. Stop it with :func:`stop`."""
    httpd = ThreadingHTTPServer((bind, 0), handler)
    httpd.daemon_threads = True
    httpd.url = f"http://{bind}:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop(httpd: ThreadingHTTPServer) -> None:
    """Stop a server started by :func:`serve` and close its socket."""
    httpd.shutdown()
    httpd.server_close()


class LoopbackServer:
    """A server object on ``bind`` (loopback): subclasses say which handler serves it (:meth:`handler`, a
    class that can reach this object) and may clean up more in :meth:`stopped`. ``stop()`` is idempotent."""

    bind = "127.0.0.1"
    _httpd: ThreadingHTTPServer | None = None

    def handler(self) -> type:
        raise NotImplementedError

    def start(self) -> Any:
        """Listen on a free port in a daemon thread; returns self."""
        self._httpd = serve(self.handler(), self.bind)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            stop(self._httpd)
            self._httpd = None
        self.stopped()

    def stopped(self) -> None:
        """More to clean up once the server is down (nothing by default)."""

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://{self.bind}:{self._httpd.server_address[1]}"
