"""Time limits: a deadline per call and a minimum-progress rule, held by one watchdog thread.

requests' ``timeout`` bounds each socket read, not an answer: a server that sends a header line
every 2 s, or a body at one byte a second, never times out, and a download, a file listing or a
catalog would run forever. Two rules close that:

- **a deadline per call.** Every public :class:`~regexplore.Registry` call runs under one
  (:func:`call`; a call made inside another keeps the outer one), and the worker threads it starts
  inherit it (:func:`carry`). Metadata calls (``catalog``, ``tags``, ``manifest``, ``history``, ...)
  get ``REGEXPLORE_DEADLINE`` seconds, default 900: a catalog of 100,000 repositories is 100 pages and
  ``tags(details=True)`` of 10,000 tags 20,000 requests, minutes each on a slow registry, while a
  notebook should not wait much longer than that. Calls that move blob bytes (``download``,
  ``save``, ``push``, ``files``, ``diff``, ``read_file``, ``extract``) get
  ``REGEXPLORE_TRANSFER_DEADLINE``, default 6 h: a 10 GB layer at 0.5 MB/s still fits, and a
  trickling server is stopped long before by the next rule. ``0`` or ``off`` turns a deadline off.
  A request made outside any call (``reg.v2``) gets the metadata deadline unless it streams.
- **minimum progress** (curl's ``--speed-limit`` / ``--speed-time``, git's ``http.lowSpeedLimit``):
  while a thread waits on a response (its head included) the server must deliver at least
  ``REGEXPLORE_LOW_SPEED_LIMIT`` bytes/s (default 1024; ``0``: off) averaged over
  ``REGEXPLORE_LOW_SPEED_TIME`` seconds (default 30, the read timeout's scale). Only the waiting is
  judged: a caller that is busy with what it already has (a slow disk, a notebook that stops
  iterating) is not the server's fault.

How it is enforced: the transport's connections (:class:`WatchedAdapter`) hand http.client a socket
wrapper that counts the bytes it receives and says when a thread is blocked in it; the one watchdog
thread looks at the connections four times a second and shuts down (``shutdown(SHUT_RDWR)``) the
socket of an exchange that is past its deadline or too slow, which makes the blocked read return at
once. The exchange keeps why (:attr:`Exchange.cut`), so the transport and the resume loops raise
:class:`~regexplore.errors.DeadlineExceeded` instead of trying again. Per chunk read nothing happens
but two attribute updates: no system call, no clock read. The watchdog sleeps while no socket is busy.

Resumes are budgeted (:class:`ResumeBudget`): each reconnect costs a token and delivered bytes earn
them back, so a server that closes after every byte runs out instead of resetting the count forever.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from requests.adapters import HTTPAdapter

from .. import _env
from ..errors import DeadlineExceeded

__all__ = ["Limits", "limits_from_env", "Deadline", "current", "within", "call", "carry", "Exchange",
           "sending", "exchange_of", "too_slow", "check_not_cut", "WatchedAdapter", "ResumeBudget",
           "DEADLINE_ENV", "TRANSFER_DEADLINE_ENV", "LOW_SPEED_LIMIT_ENV", "LOW_SPEED_TIME_ENV"]

DEADLINE_ENV = "REGEXPLORE_DEADLINE"
TRANSFER_DEADLINE_ENV = "REGEXPLORE_TRANSFER_DEADLINE"
LOW_SPEED_LIMIT_ENV = "REGEXPLORE_LOW_SPEED_LIMIT"
LOW_SPEED_TIME_ENV = "REGEXPLORE_LOW_SPEED_TIME"
DEFAULT_DEADLINE = 900.0  #: seconds for a metadata call
DEFAULT_TRANSFER_DEADLINE = 6 * 3600.0  #: seconds for a call that moves blob bytes
DEFAULT_LOW_SPEED_LIMIT = 1024  #: bytes/s a response must average while it is waited for
DEFAULT_LOW_SPEED_TIME = 30.0  #: seconds the average is taken over
TICK = 0.25  #: seconds between two looks of the watchdog
RESUME_QUANTUM = 16 * 1024  #: bytes an attempt must deliver to earn back the token its reconnect cost

F = TypeVar("F", bound=Callable[..., Any])


# ====================================================================== settings
@dataclass
class Limits:
    """The time limits of one transport (see the module doc); ``inf`` / 0 turn a rule off."""

    deadline: float = DEFAULT_DEADLINE
    transfer_deadline: float = DEFAULT_TRANSFER_DEADLINE
    low_speed_limit: int = DEFAULT_LOW_SPEED_LIMIT
    low_speed_time: float = DEFAULT_LOW_SPEED_TIME


def _number_from_env(name: str, default: float, *, off: float) -> float:
    """A positive number from ``name`` (``default`` when unset or empty; ``off`` for 0 / ``off``).
    Raises ``ValueError`` naming the variable for anything else."""
    return _env.number(name, default, off=off)


def limits_from_env() -> Limits:
    """:class:`Limits` from ``REGEXPLORE_DEADLINE``, ``REGEXPLORE_TRANSFER_DEADLINE``,
    ``REGEXPLORE_LOW_SPEED_LIMIT`` and ``REGEXPLORE_LOW_SPEED_TIME`` (defaults where unset).
    Raises ``ValueError`` for a value that is not a positive number, 0 or ``off``."""
    inf = float("inf")
    return Limits(
        deadline=_number_from_env(DEADLINE_ENV, DEFAULT_DEADLINE, off=inf),
        transfer_deadline=_number_from_env(TRANSFER_DEADLINE_ENV, DEFAULT_TRANSFER_DEADLINE, off=inf),
        low_speed_limit=int(_number_from_env(LOW_SPEED_LIMIT_ENV, DEFAULT_LOW_SPEED_LIMIT, off=0)),
        low_speed_time=_number_from_env(LOW_SPEED_TIME_ENV, DEFAULT_LOW_SPEED_TIME, off=inf),
    )


# ====================================================================== the deadline of a call
class Deadline:
    """When a call must be over: ``expires`` (``time.monotonic()``), the ``seconds`` it was given,
    ``what`` call, and the ``env`` variable that sets it (named in the error)."""

    __slots__ = ("expires", "seconds", "what", "env")

    def __init__(self, seconds: float, what: str, env: str = DEADLINE_ENV) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.what = what
        self.env = env

    def __repr__(self) -> str:
        return f"Deadline({self.what!r}, {self.seconds:g} s, {self.remaining():.1f} s left)"

    def remaining(self) -> float:
        """Seconds left (negative once expired)."""
        return self.expires - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.expires

    def error(self, url: str | None = None) -> DeadlineExceeded:
        """The error to raise for this deadline (``url`` redacted by the caller)."""
        return DeadlineExceeded(f"{self.what} ran past its deadline of {self.seconds:g} s ({self.env})",
                                seconds=self.seconds, url=url)

    def check(self, url: str | None = None) -> None:
        """Raises :class:`DeadlineExceeded` once the deadline has passed."""
        if self.expired():
            raise self.error(url)


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("regexplore_deadline",
                                                                          default=None)


def current() -> Deadline | None:
    """The deadline of the call running in this thread (or carried into it), or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def within(seconds: float | None, what: str, env: str = DEADLINE_ENV) -> Iterator[Deadline | None]:
    """Run the block under a new deadline of ``seconds`` unless a call's deadline is already running
    (the outer call's wins); ``None`` or ``inf``: no new one. Yields the deadline in force."""
    outer = _CURRENT.get()
    if outer is not None or seconds is None or seconds == float("inf"):
        yield outer
        return
    token = _CURRENT.set(Deadline(seconds, what, env))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def call(limits: Limits, what: str, *,
         transfer: bool = False) -> contextlib.AbstractContextManager[Deadline | None]:
    """:func:`within` the metadata deadline of ``limits``, or its transfer deadline."""
    if transfer:
        return within(limits.transfer_deadline, what, TRANSFER_DEADLINE_ENV)
    return within(limits.deadline, what, DEADLINE_ENV)


def carry(fn: F) -> F:
    """``fn`` wrapped to run under this thread's current deadline, for a worker thread or pool."""
    deadline = _CURRENT.get()
    if deadline is None:
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kw: Any) -> Any:
        token = _CURRENT.set(deadline)
        try:
            return fn(*args, **kw)
        finally:
            _CURRENT.reset(token)

    return run  # type: ignore[return-value]


# ====================================================================== one exchange
class Exchange:
    """One HTTP exchange as the watchdog judges it: the call's ``deadline`` (or None), the
    minimum-progress rule (``limit`` bytes/s over ``window`` s; 0: off) and, once the watchdog has
    shut its socket down, why: ``cut`` is ``"deadline"`` or ``"slow"`` (None while it was not)."""

    __slots__ = ("deadline", "limit", "window", "cut", "detail")

    def __init__(self, deadline: Deadline | None, limits: Limits) -> None:
        self.deadline = deadline
        self.limit = limits.low_speed_limit if limits.low_speed_time != float("inf") else 0
        self.window = limits.low_speed_time
        self.cut: str | None = None
        self.detail = ""

    def late(self) -> bool:
        """True when trying again cannot help: cut at the deadline, or the deadline has passed."""
        return self.cut == "deadline" or (self.deadline is not None and self.deadline.expired())

    def error(self, url: str | None = None) -> DeadlineExceeded | None:
        """Why this exchange cannot go on, as an error: the deadline's, or the minimum-progress
        rule's when the watchdog cut it for that; None when neither applies."""
        if self.late():
            assert self.deadline is not None
            return self.deadline.error(url)
        if self.cut == "slow":
            return DeadlineExceeded(f"the server is too slow: {self.detail} ({LOW_SPEED_LIMIT_ENV}, "
                                    f"{LOW_SPEED_TIME_ENV})", seconds=self.window, url=url)
        return None


_SENDING: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("regexplore_exchange",
                                                                          default=None)


@contextlib.contextmanager
def sending(exchange: Exchange) -> Iterator[Exchange]:
    """Make the connection that sends the next request in this thread watch it as ``exchange``."""
    token = _SENDING.set(exchange)
    try:
        yield exchange
    finally:
        _SENDING.reset(token)


def exchange_of(resp: Any) -> Exchange | None:
    """The :class:`Exchange` a response of :meth:`Transport.send_once` was watched as, or None."""
    return getattr(resp, "regexplore_exchange", None)


def too_slow(resp: Any, url: str | None = None) -> DeadlineExceeded | None:
    """:meth:`Exchange.error` for a response's exchange (None when it was not cut or is unknown)."""
    ex = exchange_of(resp)
    return ex.error(url) if ex is not None else None


def check_not_cut(resp: Any) -> None:
    """At the end of a streamed body: raise ``ConnectionAbortedError`` (a dropped connection to
    the resume loops) when the watchdog cut it, since a body without a length just ends early."""
    ex = exchange_of(resp)
    if ex is not None and ex.cut is not None:
        raise ConnectionAbortedError(f"cut by the watchdog ({ex.cut})")


# ====================================================================== sockets and the watchdog
def _shutdown(sock: Any) -> None:
    """Shut a socket down both ways (a blocked read returns at once); on an SSL socket the TCP
    socket underneath, leaving the SSL object to the thread that is using it."""
    with contextlib.suppress(OSError, ValueError):
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedSocket:
    """A connection's socket as http.client sees it: counts what it receives (``received``) and
    says when a thread is blocked in a read (``reading``) or a send (``sending``). The rest is
    delegated; ``makefile`` is the socket module's own, reading through this wrapper."""

    def __init__(self, sock: Any, exchange: Exchange | None) -> None:
        self._sock = sock
        self._io_refs = 0
        self._closed = False
        self.exchange = exchange
        self.received = 0
        self.reading = False
        self.sending = False
        self.seen_tick = -2  # watchdog bookkeeping: the tick it was last looked at ...
        self.seen_bytes = 0  # ... ``received`` then ...
        self.mark_time = 0.0  # ... and the start of the window being judged
        self.mark_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def fileno(self) -> int:  # asked before every reuse of a pooled connection
        return self._sock.fileno()

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def begin(self, exchange: Exchange | None) -> None:
        """A new exchange on this connection: judged from its own start."""
        self.exchange = exchange
        self.seen_tick = -2

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self.reading = True
        if _WATCHDOG.asleep:
            _WATCHDOG.wake()
        try:
            n = self._sock.recv_into(buffer, *args)
        finally:
            self.reading = False
        self.received += n
        return n

    def recv(self, *args: Any) -> bytes:
        self.reading = True
        if _WATCHDOG.asleep:
            _WATCHDOG.wake()
        try:
            data = self._sock.recv(*args)
        finally:
            self.reading = False
        self.received += len(data)
        return data

    def sendall(self, data: Any, *args: Any) -> None:
        self.sending = True
        if _WATCHDOG.asleep:
            _WATCHDOG.wake()
        try:
            self._sock.sendall(data, *args)
        finally:
            self.sending = False

    makefile = socket.socket.makefile  # SocketIO(self): its reads come through recv_into above

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:  # as socket.close: a response still reading keeps it open
            self._sock.close()


class _Watchdog:
    """One daemon thread that looks at every watched socket each :data:`TICK` while any is busy,
    and shuts down those whose exchange is past its deadline or below the minimum progress."""

    def __init__(self) -> None:
        self._socks: weakref.WeakSet[_WatchedSocket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.asleep = True
        self.ticks = 0

    def add(self, sock: _WatchedSocket) -> None:
        with self._lock:
            self._socks.add(sock)
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="regexplore-watchdog", daemon=True)
                self._thread.start()
        self.wake()

    def wake(self) -> None:
        self.asleep = False
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(TICK)
            if self._look():
                continue
            self.asleep = True  # sleep until a socket is busy again (it wakes us) ...
            self._wake.clear()
            if self._look():  # ... unless one became busy while we were deciding
                self.wake()
                continue
            self.ticks += 1  # a gap: whoever is busy after the sleep is judged from then on

    def _look(self) -> bool:
        """Judge every socket once; True while any is busy."""
        with self._lock:
            socks = list(self._socks)
        self.ticks += 1
        now = time.monotonic()
        busy = False
        for s in socks:
            busy = _judge(s, now, self.ticks) or busy
        return busy


def _judge(s: _WatchedSocket, now: float, tick: int) -> bool:
    """Apply the deadline and the minimum-progress rule to one socket; True when it is busy."""
    ex = s.exchange
    busy = s.reading or s.sending
    if ex is None or ex.cut is not None:
        return busy
    got = s.received
    if s.seen_tick != tick - 1 or s.sending or (not s.reading and got == s.seen_bytes):
        s.mark_time, s.mark_bytes = now, got  # new exchange, or nobody waiting on the server: not judged
    s.seen_tick, s.seen_bytes = tick, got
    if busy and ex.deadline is not None and now >= ex.deadline.expires:
        _cut(s, ex, "deadline", "")
    elif ex.limit and now - s.mark_time >= ex.window:
        if got - s.mark_bytes < ex.limit * ex.window:
            _cut(s, ex, "slow", f"{got - s.mark_bytes} bytes in {now - s.mark_time:.1f} s, under "
                                f"{ex.limit} bytes/s")
        else:
            s.mark_time, s.mark_bytes = now, got
    return busy


def _cut(s: _WatchedSocket, ex: Exchange, why: str, detail: str) -> None:
    """Record why, then shut the socket down (the reader sees a dropped connection and asks ``ex``)."""
    if s.exchange is not ex:
        return
    ex.cut, ex.detail = why, detail
    _shutdown(s._sock)


_WATCHDOG = _Watchdog()


# ====================================================================== urllib3 plumbing
class _WatchedConnectionMixin:
    """Gives every request of a connection the :class:`Exchange` the transport is sending (see
    :func:`sending`), and its socket the :class:`_WatchedSocket` wrapper once connected. Between
    the TCP connect (bounded by the connect timeout) and the end of ``connect()`` (a proxy tunnel,
    the TLS handshake) a duplicate of the raw socket is watched instead, so a handshake that
    trickles is cut too."""

    _exchange: Exchange | None = None
    _connecting: _WatchedSocket | None = None
    _handshakes = False  #: more than the TCP connect happens in ``connect()`` even without a tunnel
    _tunnel_host: str | None
    sock: Any

    def request(self, *args: Any, **kw: Any) -> None:
        self._exchange = _SENDING.get()
        if isinstance(self.sock, _WatchedSocket):
            self.sock.begin(self._exchange)
        super().request(*args, **kw)  # type: ignore[misc]

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        if self._exchange is not None and (self._handshakes or self._tunnel_host):
            guard = self._connecting = _WatchedSocket(sock.dup(), self._exchange)
            guard.reading = True  # waiting on the server until connected
            _WATCHDOG.add(guard)
        return sock

    def connect(self) -> None:
        self._exchange = _SENDING.get()  # an https pool connects before it calls request()
        try:
            super().connect()  # type: ignore[misc]
        finally:
            guard, self._connecting = self._connecting, None
            if guard is not None:
                guard.reading = False
                guard.exchange = None
                guard._sock.close()
        if self.sock is not None and not isinstance(self.sock, _WatchedSocket):
            self.sock = _WatchedSocket(self.sock, self._exchange)
            _WATCHDOG.add(self.sock)


_WATCHED: dict[type, type] = {}
_WATCHED_LOCK = threading.Lock()


def _watched_class(cls: Any) -> Any:
    """``cls`` (a pool's ``ConnectionCls``) with :class:`_WatchedConnectionMixin`, made once per
    class; a class that is not urllib3's (a test double such as vcrpy's stub) is left as it is."""
    if not isinstance(cls, type) or not issubclass(cls, urllib3.connection.HTTPConnection) \
            or issubclass(cls, _WatchedConnectionMixin):
        return cls
    with _WATCHED_LOCK:
        watched = _WATCHED.get(cls)
        if watched is None:
            https = issubclass(cls, urllib3.connection.HTTPSConnection)
            watched = _WATCHED[cls] = type(f"Watched{cls.__name__}", (_WatchedConnectionMixin, cls),
                                           {"_handshakes": https})
        return watched


def _pool_maker(scheme: str) -> Callable[..., Any]:
    """Stands for a pool class in a pool manager: urllib3's pool for ``scheme`` (as it is now, patched
    or not), whose connections are watched."""
    def make(host: str, port: int | None, **kw: Any) -> Any:
        pool = urllib3.poolmanager.pool_classes_by_scheme[scheme](host, port, **kw)
        pool.ConnectionCls = _watched_class(pool.ConnectionCls)
        return pool
    return make


_POOL_CLASSES = {"http": _pool_maker("http"), "https": _pool_maker("https")}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct, or through an HTTP(S) proxy) are watched."""

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **kw: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kw)
        if type(manager) is urllib3.ProxyManager:  # SOCKS managers keep their own connection classes
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


# ====================================================================== resume budget
class ResumeBudget:
    """How many more times a transfer may be asked for after a drop or a short answer.

    It holds ``tries`` tokens. Every attempt that ends before the transfer does costs one; every
    :data:`RESUME_QUANTUM` bytes it got past the furthest point reached before (``start`` at
    first) earn one back, never above ``tries``. A link that drops but moves data keeps going; a
    server that sends a byte per connection (or answers 1-byte 206s), or that ignores Range and
    breaks off where it did before, spends a token per attempt and is given up on after ``tries``
    of them, where counting "attempts without any progress" was reset by every byte.
    """

    def __init__(self, tries: int, start: int = 0, quantum: int = RESUME_QUANTUM) -> None:
        self.tries = tries
        self.quantum = quantum
        self.tokens = float(tries)
        self.furthest = start
        self.streak = 0  #: attempts in a row that gained less than ``quantum``

    def spend(self, reached: int) -> bool:
        """Account for an attempt that ended, short of the end, with the transfer at byte
        ``reached``; returns False when no try is left."""
        gained = max(0, reached - self.furthest)
        self.furthest = max(self.furthest, reached)
        self.tokens = min(float(self.tries), self.tokens + gained / self.quantum) - 1
        self.streak = 0 if gained >= self.quantum else self.streak + 1
        return self.tokens > 1e-9

    def pause(self) -> None:
        """Back off before the next attempt after unproductive ones (0.1 s doubling, up to 2 s)."""
        if self.streak:
            time.sleep(min(0.05 * (2 ** self.streak), 2.0))
