"""The one retry policy and the one helper every retry loop uses.

:class:`RetryPolicy` says how hard to try again (tries, backoff with full jitter, ``Retry-After``, a
sleeping budget, the running call's deadline); :class:`Attempts` counts the tries of one operation
under it. The transport's requests, the token requests (:mod:`regexplore.http.auth`) and the blob upload
sessions (:mod:`regexplore.content.blobs`) all loop as::

    tries = Attempts(policy)
    while True:
        ...                                   # one try
        if transient and tries.again(retry_after):
            continue                          # slept; go again
        raise ...                             # no try, no budget or no time left
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from ..errors import RegistryError
from . import deadline as _deadline

__all__ = ["Attempts", "RetryPolicy"]


@dataclass
class RetryPolicy:
    """How hard to try again: ``attempts`` tries in all, sleeping ``backoff * 2**n`` seconds
    (with full jitter, capped by ``max_sleep``) unless the server says ``Retry-After``; never
    more than ``budget`` seconds of sleeping in one request."""

    attempts: int = 5
    backoff: float = 0.25
    max_sleep: float = 8.0
    budget: float = 30.0
    #: answers worth asking again (the same for registry, token server and upload sessions)
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to sleep after try ``attempt`` (0 = the first): ``retry_after`` when the server
        said, else a random share of the exponential backoff."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0, min(self.max_sleep, self.backoff * (2**attempt)))

    def pause(self, attempt: int, slept: float, retry_after: float | None = None) -> float | None:
        """Sleep before the try after ``attempt`` (0 = the first) and return the seconds slept
        so far in this request; None, without sleeping, when no try or sleeping budget is left,
        or when the sleep would end past the running call's deadline."""
        if attempt + 1 >= self.attempts:
            return None
        d = self.delay(attempt, retry_after)
        if slept + d > self.budget:
            return None
        call = _deadline.current()
        if call is not None and d >= call.remaining():
            return None
        time.sleep(d)
        return slept + d

    def transient(self, exc: RegistryError) -> bool:
        """True for an error worth another try: a status in :attr:`statuses`, or a connection-level
        failure (a plain :class:`RegistryError` without a status)."""
        return exc.status in self.statuses or (type(exc) is RegistryError and exc.status is None)


class Attempts:
    """The tries of one operation under ``policy``: :meth:`again` sleeps before the next try, or
    says there is none."""

    __slots__ = ("attempt", "policy", "slept")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempt = 0  # tries made before the current one
        self.slept = 0.0

    def __repr__(self) -> str:
        return f"<Attempts {self.attempt + 1}/{self.policy.attempts}, slept {self.slept:.2f} s>"

    def left(self) -> bool:
        """True while the policy allows a try after the current one."""
        return self.attempt + 1 < self.policy.attempts

    def again(self, retry_after: float | None = None) -> bool:
        """Sleep before the next try (``retry_after``: the server's hint) and return True; False,
        without sleeping, when :meth:`RetryPolicy.pause` says no try, budget or time is left."""
        waited = self.policy.pause(self.attempt, self.slept, retry_after)
        if waited is None:
            return False
        self.attempt, self.slept = self.attempt + 1, waited
        return True
