"""A loopback TCP proxy that adds round-trip latency, for benchmarks.

``LatencyProxy(target_host, target_port, rtt_ms=20)`` listens on ``127.0.0.1:<free port>`` and forwards
every connection to the target. Each direction's bytes are delivered ``rtt_ms / 2`` after they were read,
segment by segment and in order (no bandwidth limit), so one HTTP request/response exchange costs one RTT and
a keep-alive connection pays it per exchange, never per connection. With ``handshake=True`` (the default) a
new connection's first bytes are held one extra RTT, the cost of a real TCP handshake: a client that opens a
connection per request pays for it, as it would on a network.

It also counts what a benchmark wants to report: ``connections`` accepted and HTTP ``requests`` seen (request
heads parsed on the client-to-server stream, bodies skipped by ``Content-Length`` / chunked framing), with a
log of ``(connection id, method, target)`` in :attr:`LatencyProxy.request_log`.

    with LatencyProxy("127.0.0.1", 5000, rtt_ms=20) as proxy:
        reg = Registry(f"http://{proxy.host}:{proxy.port}")
        ...
        print(proxy.requests, proxy.connections)

The event loop runs in a daemon thread; ``close()`` (or leaving the ``with``) stops it and closes every
connection.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

__all__ = ["LatencyProxy", "LatencyProxyProcess", "HttpRequestCounter"]

_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]$")
_READ = 64 * 1024


class HttpRequestCounter:
    """Incremental parser of a client's HTTP/1.x byte stream: calls ``on_request(method, target)`` for each
    request head and skips its body. Gives up (stops counting) on a stream it cannot frame."""

    def __init__(self, on_request: Any) -> None:
        self.on_request = on_request
        self.buf = b""
        self.state = "head"  # head | body | chunk-size | chunk-data | chunk-crlf | trailer | lost
        self.remaining = 0

    def feed(self, data: bytes) -> None:
        if self.state == "lost":
            return
        self.buf += data
        while self.buf:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 1 << 20:
                        self.state, self.buf = "lost", b""
                    return
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                lines = head.split(b"\r\n")
                m = _REQUEST_LINE.match(lines[0].lstrip(b"\r\n"))
                if not m:
                    self.state, self.buf = "lost", b""
                    return
                self.on_request(m.group(1).decode(), m.group(2).decode("latin-1"))
                length, chunked = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip() or 0)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    self.state = "chunk-size"
                elif length:
                    self.state, self.remaining = "body", length
            elif self.state in ("body", "chunk-data"):
                take = min(self.remaining, len(self.buf))
                self.buf = self.buf[take:]
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "head" if self.state == "body" else "chunk-crlf"
            elif self.state == "chunk-crlf":
                if len(self.buf) < 2:
                    return
                self.buf = self.buf[2:]
                self.state = "chunk-size"
            elif self.state in ("chunk-size", "trailer"):
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                if self.state == "trailer":
                    if line == b"":
                        self.state = "head"
                    continue
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.remaining = "chunk-data", size


class LatencyProxy:
    """A context manager: a latency-adding TCP proxy on ``self.host:self.port`` in front of the target.

    Parameters
    ----------
    target_host, target_port : where to forward.
    rtt_ms : the added round-trip time; each direction is delayed by half of it.
    handshake : hold a new connection's first client bytes one extra RTT (a TCP handshake's cost).
    count_http : parse the client stream for HTTP request heads (``requests``, ``request_log``).

    Attributes: ``host``, ``port``, ``connections`` (accepted), ``requests`` (HTTP requests seen),
    ``request_log`` (list of ``(conn_id, method, target)``), ``bytes_up``, ``bytes_down``.
    """

    def __init__(self, target_host: str, target_port: int, rtt_ms: float = 20.0, *, handshake: bool = True,
                 count_http: bool = True, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = int(target_port)
        self.rtt_ms = float(rtt_ms)
        self.handshake = handshake
        self.count_http = count_http
        self.host = listen_host
        self.port: int | None = None
        self.connections = 0
        self.requests = 0
        self.request_log: list[tuple[int, str, str]] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ public
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def reset_counts(self) -> None:
        with self._lock:
            self.connections = self.requests = self.bytes_up = self.bytes_down = 0
            self.request_log = []

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"connections": self.connections, "requests": self.requests,
                    "bytes_up": self.bytes_up, "bytes_down": self.bytes_down}

    def start(self) -> LatencyProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, 0, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - bind failure
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<LatencyProxy {self.host}:{self.port} -> {self.target_host}:{self.target_port} "
                f"rtt={self.rtt_ms:g}ms>")

    # ------------------------------------------------------------------ internals
    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        accepted = time.monotonic()
        with self._lock:
            self.connections += 1
            conn_id = self.connections
        self._writers.add(c_writer)
        s_writer = None
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                return
            self._writers.add(s_writer)
            half = self.rtt_ms / 2000.0
            # a real client could send its first byte only after SYN / SYN-ACK: one RTT after connect()
            first_at = accepted + half + (self.rtt_ms / 1000.0 if self.handshake else 0.0)
            counter = None
            if self.count_http:
                def on_request(method: str, target: str) -> None:
                    with self._lock:
                        self.requests += 1
                        self.request_log.append((conn_id, method, target))
                counter = HttpRequestCounter(on_request)
            up = asyncio.ensure_future(self._pipe(c_reader, s_writer, half, first_at, counter, "up"))
            down = asyncio.ensure_future(self._pipe(s_reader, c_writer, half, 0.0, None, "down"))
            try:
                await asyncio.gather(up, down)
            finally:
                up.cancel()
                down.cancel()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                    not_before: float, counter: HttpRequestCounter | None, direction: str) -> None:
        """Read segments and deliver each ``delay`` seconds after it was read, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    data = await reader.read(_READ)
                except ConnectionError:
                    data = b""
                at = max(time.monotonic() + delay, not_before)
                if data:
                    with self._lock:
                        if direction == "up":
                            self.bytes_up += len(data)
                        else:
                            self.bytes_down += len(data)
                    if counter is not None:
                        counter.feed(data)
                queue.put_nowait((at, data))
                if not data:
                    break
                if sender.done():
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()


class LatencyProxyProcess:
    """The same proxy in a child process (``python -m benchmarks.latency_proxy``), so that its event loop does
    not compete with the measured client for the GIL. Same interface: ``host``, ``port``, ``url``, ``netloc``,
    ``counts()``, ``reset_counts()``, ``request_log`` (fetched on access), context manager."""

    def __init__(self, target_host: str, target_port: int, rtt_ms: float = 20.0, *, handshake: bool = True,
                 count_http: bool = True) -> None:
        self.args = [target_host, str(int(target_port)), "--rtt-ms", str(rtt_ms)]
        if not handshake:
            self.args.append("--no-handshake")
        if not count_http:
            self.args.append("--no-count")
        self.rtt_ms = float(rtt_ms)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._proc: Any = None

    url = LatencyProxy.url
    netloc = LatencyProxy.netloc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> LatencyProxyProcess:
        import os
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.latency_proxy", *self.args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
        line = self._proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the latency proxy did not start")
        self.port = int(json.loads(line)["port"])
        return self

    def _ask(self, command: str) -> Any:
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def counts(self) -> dict[str, int]:
        return self._ask("counts")

    def reset_counts(self) -> None:
        self._ask("reset")

    @property
    def request_log(self) -> list[tuple[int, str, str]]:
        return [tuple(x) for x in self._ask("log")]

    @property
    def requests(self) -> int:
        return self.counts()["requests"]

    @property
    def connections(self) -> int:
        return self.counts()["connections"]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(10)
            except Exception:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()

    def __enter__(self) -> LatencyProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="a latency-adding TCP proxy; commands on stdin: counts, reset, log")
    ap.add_argument("target_host")
    ap.add_argument("target_port", type=int)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--no-handshake", action="store_true")
    ap.add_argument("--no-count", action="store_true")
    a = ap.parse_args(argv)
    with LatencyProxy(a.target_host, a.target_port, a.rtt_ms, handshake=not a.no_handshake,
                      count_http=not a.no_count) as proxy:
        print(json.dumps({"port": proxy.port}), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "counts":
                out: Any = proxy.counts()
            elif cmd == "reset":
                proxy.reset_counts()
                out = "ok"
            elif cmd == "log":
                with proxy._lock:
                    out = list(proxy.request_log)
            else:
                out = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    _serve()
