"""How a request to `/api/v1` gets in: a bearer token (never the page's cookie alone), a rate
limit per token, a body-size limit. The server's SessionGate calls `ApiGate.check` for every
API path before any route runs; the OpenAPI page and its schema are for logged-in people and
go through the page's session check instead.

Why not the cookie: a page's cookie rides along on any request the browser makes, so an API
that honoured it would be open to cross-site requests the page's SameSite=Lax does not stop
(top-level POSTs from forms). A token has to be put into each request on purpose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from labeling_ui.accounts import ReviewerInfo
from labeling_ui.login_cache import LoginCache

API_PREFIX = "/api/v1"
DOCS_PATHS = (f"{API_PREFIX}/docs", f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/static/")


def is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def is_docs(path: str) -> bool:
    return path.startswith(DOCS_PATHS)


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class TokenBucket:
    """`rate` requests a second on average per key, bursts of `burst`."""

    def __init__(self, rate: float, burst: float, limit: int = 100_000):
        self.rate, self.burst, self.limit = rate, burst, limit
        self._state: dict[object, tuple[float, float]] = {}

    def take(self, key: object) -> float:
        """0 when the request may go; otherwise the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        level, then = self._state.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        if level < 1:
            self._state[key] = (level, now)
            return (1 - level) / self.rate
        if len(self._state) > self.limit:
            self._state.clear()
        self._state[key] = (level - 1, now)
        return 0.0


@dataclass
class Refusal:
    status: int
    message: str
    retry_after: float | None = None


class ApiGate:
    def __init__(self, store, rate_per_second: float = 20.0, burst: float = 40.0):
        self.buckets = TokenBucket(rate_per_second, burst)
        # dropped at a revoke, a disabled account or a new password (labeling_ui/login_cache.py)
        self.tokens = LoginCache(store.tokens.user, lambda: (store.tokens.changes, store.accounts.changes),
                                 limit=100_000)

    async def check(self, headers: list[tuple[bytes, bytes]]) -> ReviewerInfo | Refusal:
        token = bearer(headers)
        if not token:
            return Refusal(401, "API token required: send 'Authorization: Bearer <token>' (python -m labeling_ui "
                                "create-token NAME makes one)")
        user = await self.tokens.user(token)
        if user is None:
            return Refusal(401, "this API token is unknown, revoked, or its account is disabled")
        wait = self.buckets.take(token)
        if wait:
            return Refusal(429, "too many requests: slow down", retry_after=wait)
        return user
