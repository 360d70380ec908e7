"""The census' request budget: a token bucket every request of a census' registry client passes through.

:func:`throttle` puts a :class:`TokenBucket` in front of a transport's ``send_once`` (each HTTP exchange,
retries and token requests included). Locally one bucket holds ``max_requests_per_second``; on Dask each
worker process holds an equal share of it, set again at the start of every task from the live worker count,
so the cluster together stays under the rate (see :mod:`regexplore.census.dask`). A bucket holds at most
a tenth of a second's tokens, so in any window of ``t`` seconds at most ``rate * (t + 0.1)`` requests go.
The bucket also watches Docker Hub's ``ratelimit-remaining``: when the
registry says few pulls are left, requests are paced to the window's refill rate instead of running into
429s (which the transport's retry policy answers with ``Retry-After``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["LOW_REMAINING", "TokenBucket", "throttle"]

#: below this many pulls left in the registry's window, requests are paced to the window's refill rate
LOW_REMAINING = 10


class TokenBucket:
    """At most ``rate`` requests per second on average, in bursts of at most :attr:`burst` (a tenth of a
    second's worth, at least 1); ``rate=None``: no limit. Thread-safe; :attr:`rate` may be changed while in
    use (:meth:`set_rate`). :attr:`requests` counts the requests let through."""

    def __init__(self, rate: float | None) -> None:
        self.set_rate(rate)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.requests = 0
        self._lock = threading.Lock()

    def set_rate(self, rate: float | None) -> None:
        """Let ``rate`` requests per second through from now on (None: no limit). Raises ``ValueError``
        for a rate that is not a positive number."""
        if rate is not None and not rate > 0:
            raise ValueError(f"max_requests_per_second must be a positive number, not {rate!r}")
        self.rate = rate
        self.burst = max(1.0, rate / 10) if rate else 1.0

    def take(self, pace: float | None = None) -> None:
        """Wait for a token (and, with ``pace``, at least that many seconds since the last request)."""
        rate = self.rate or float("inf")
        if pace is not None:
            rate = min(rate, 1 / pace)
        while True:
            with self._lock:
                now = time.monotonic()
                if rate == float("inf"):
                    self.requests += 1
                    return
                self.tokens = min(self.burst if pace is None else 1.0, self.tokens + (now - self.stamp) * rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    self.requests += 1
                    return
                wait = (1 - self.tokens) / rate
            time.sleep(wait)


def _pace(rate_limit: Any) -> float | None:
    """Seconds between requests the registry's rate-limit headers ask for: the window's refill interval when
    fewer than :data:`LOW_REMAINING` pulls are left, else None."""
    remaining, limit, window = rate_limit.remaining, rate_limit.limit, rate_limit.window_s
    if remaining is None or remaining >= LOW_REMAINING or not limit or not window:
        return None
    return window / limit


def throttle(transport: Any, bucket: TokenBucket) -> None:
    """Make every exchange of ``transport`` take a token from ``bucket`` first (paced by the registry's
    rate-limit headers as last seen). Meant for the census' own client, which no one else uses."""
    send = transport.send_once

    def send_once(*args: Any, **kw: Any) -> Any:
        bucket.take(_pace(transport.rate_limit))
        return send(*args, **kw)

    transport.send_once = send_once
