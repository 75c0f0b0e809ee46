"""Throttling of access-code attempts: guessing is infeasible, real respondents are not locked out.

Per address: at most ``per_address`` *wrong* codes in a sliding window. The
attempt is **reserved before the code is checked** (synchronously, with no
await between the test and the reservation), so concurrent requests from one
address cannot all slip past the limit; a correct code gives its
reservation back. A typo caught by the check character never reaches here.

Per code: at most ``per_code`` successful sign-ins per window, so a leaked
slip cannot be used to hammer one respondent's draft; far above what a
person needs. Nothing here is keyed by anything personal: addresses are
kept as keyed hashes, in memory only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections import deque
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    def __init__(self, *, per_address: int, window_s: float, per_code: int = 30,
                 clock: Callable[[], float]) -> None:
        self._limit = per_address
        self._per_code = per_code
        self._window = window_s
        self._clock = clock
        self._salt = os.urandom(16)
        self._failures: dict[bytes, deque[float]] = {}
        self._signins: dict[str, deque[float]] = {}
        self.refused = 0

    def _key(self, address: str) -> bytes:
        return hmac.new(self._salt, address.encode(), hashlib.sha256).digest()[:16]

    def _live(self, q: deque[float]) -> deque[float]:
        cutoff = self._clock() - self._window
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    def reserve(self, address: str) -> tuple[bytes, float] | None:
        """A ticket for one attempt, or None when the address has used up its wrong attempts."""
        key = self._key(address)
        q = self._live(self._failures.setdefault(key, deque()))
        if len(q) >= self._limit:
            self.refused += 1
            return None
        stamp = self._clock()
        q.append(stamp)
        return (key, stamp)

    def release(self, ticket: tuple[bytes, float]) -> None:
        """The code was right: the reserved attempt is not a failure."""
        key, stamp = ticket
        q = self._failures.get(key)
        if q is not None:
            with contextlib.suppress(ValueError):
                q.remove(stamp)
            if not q:
                del self._failures[key]

    def signin_allowed(self, code_hash: str) -> bool:
        q = self._live(self._signins.setdefault(code_hash, deque()))
        if len(q) >= self._per_code:
            self.refused += 1
            return False
        q.append(self._clock())
        return True

    def sweep(self) -> None:
        for key in [k for k, q in self._failures.items() if not self._live(q)]:
            del self._failures[key]
        for code in [c for c, q in self._signins.items() if not self._live(q)]:
            del self._signins[code]
