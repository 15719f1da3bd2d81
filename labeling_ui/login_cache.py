"""Who a login secret belongs to (a page's session cookie, an API token), cached for a few
seconds: a page loads dozens of assets per visit, and a program calls the API in bursts. Both
server.py's session check and the API gate (labeling_ui/api/gate.py) use it.

The cache is dropped whenever `stamp()` moves (a revoke, a disabled account, a new password
made through this process), so those end at once here; a change from another process (the CLI)
reaches it within CACHE_SECONDS. While the store is unreachable, a secret seen before keeps its
last answer, so the request reaches a handler that says "try again" itself; an unknown one
raises StoreUnavailable for the caller to answer 503.
"""

from __future__ import annotations

import time
from typing import Callable, Hashable

import anyio

from labeling_ui.accounts import ReviewerInfo
from labeling_ui.tasks import StoreUnavailable

CACHE_SECONDS = 5.0


class LoginCache:
    def __init__(self, lookup: Callable[[str], ReviewerInfo | None], stamp: Callable[[], Hashable],
                 limit: int = 10_000):
        self.lookup, self.stamp, self.limit = lookup, stamp, limit
        self._hits: dict[str, tuple[float, ReviewerInfo | None]] = {}
        self._stamp = stamp()

    async def user(self, secret: str | None) -> ReviewerInfo | None:
        if not secret:
            return None
        if self._stamp != (now_stamp := self.stamp()):
            self._hits.clear()
            self._stamp = now_stamp
        hit = self._hits.get(secret)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            user = await anyio.to_thread.run_sync(self.lookup, secret)
        except StoreUnavailable:
            if hit:
                return hit[1]
            raise
        if len(self._hits) > self.limit:
            self._hits.clear()
        self._hits[secret] = (time.monotonic() + CACHE_SECONDS, user)
        return user

    def forget(self, secret: str | None) -> None:
        self._hits.pop(secret or "", None)
