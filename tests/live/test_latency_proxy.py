"""benchmarks/latency_proxy.py: adds about the RTT per exchange, forwards bytes exactly, counts requests."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from benchmarks.latency_proxy import HttpRequestCounter, LatencyProxy  # noqa: E402

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add 40 ms to every direct exchange

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        body = PAYLOAD if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        body = hashlib.sha256(data).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops concurrent SYNs (a 1 s retry)
    daemon_threads = True


@pytest.fixture(scope="module")
def origin():
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address
    srv.shutdown()
    srv.server_close()


def _median_get(session: requests.Session, url: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert session.get(url, timeout=5).content == b"ok"
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def test_adds_about_the_rtt_per_request(origin):
    host, port = origin
    with requests.Session() as s:
        s.get(f"http://{host}:{port}/", timeout=5)
        direct = _median_get(s, f"http://{host}:{port}/")
    with LatencyProxy(host, port, rtt_ms=40) as proxy, requests.Session() as s:
        url = f"http://{proxy.host}:{proxy.port}/"
        t0 = time.perf_counter()
        s.get(url, timeout=5)  # new connection: handshake RTT + request RTT
        first = time.perf_counter() - t0
        via = _median_get(s, url)  # keep-alive: one RTT each
        assert proxy.connections == 1
        assert proxy.requests == 6
    added = via - direct
    assert 0.038 <= added <= 0.070, added
    assert 0.078 <= first <= 0.140, first


def test_forwards_bytes_exactly_both_ways(origin):
    host, port = origin
    with LatencyProxy(host, port, rtt_ms=10) as proxy, requests.Session() as s:
        url = f"http://{proxy.host}:{proxy.port}"
        assert s.get(url + "/big", timeout=10).content == PAYLOAD
        r = s.put(url + "/upload", data=PAYLOAD, timeout=10)
        assert r.text == hashlib.sha256(PAYLOAD).hexdigest()
        assert s.get(url + "/", timeout=5).content == b"ok"
        assert [m for _, m, _ in proxy.request_log] == ["GET", "PUT", "GET"]
        assert proxy.bytes_down > len(PAYLOAD)
        assert proxy.bytes_up > len(PAYLOAD)


def test_raw_tcp_and_concurrent_connections(origin):
    host, port = origin
    with LatencyProxy(host, port, rtt_ms=20, count_http=False) as proxy:
        results: list[bytes] = []

        def one() -> None:
            with socket.create_connection((proxy.host, proxy.port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
                results.append(data)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        assert len(results) == 32 and all(r.endswith(b"\r\n\r\nok") for r in results)
        assert proxy.connections == 32
        assert elapsed < 1.0  # concurrent, not 32 x (handshake + RTT)


def test_counter_skips_bodies_and_chunks():
    seen: list[tuple[str, str]] = []
    c = HttpRequestCounter(lambda m, t: seen.append((m, t)))
    stream = (b"PUT /a HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + b"GET /fake HTTP/1.1\r\n\r\n"[:20]
              + b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nGET /\r\n0\r\n\r\n"
              + b"HEAD /c HTTP/1.1\r\n\r\n")
    for i in range(0, len(stream), 7):  # fed in small pieces
        c.feed(stream[i:i + 7])
    assert seen == [("PUT", "/a"), ("POST", "/b"), ("HEAD", "/c")]


def test_child_process_variant(origin):
    from benchmarks.latency_proxy import LatencyProxyProcess

    host, port = origin
    with LatencyProxyProcess(host, port, rtt_ms=20) as proxy, requests.Session() as s:
        t0 = time.perf_counter()
        for _ in range(3):
            assert s.get(proxy.url + "/", timeout=5).content == b"ok"
        elapsed = time.perf_counter() - t0
        assert proxy.counts()["requests"] == 3 and proxy.connections == 1
        assert [m for _, m, _ in proxy.request_log] == ["GET"] * 3
        proxy.reset_counts()
        assert proxy.requests == 0
    assert 0.075 <= elapsed <= 0.3, elapsed  # handshake + 3 exchanges of 20 ms
