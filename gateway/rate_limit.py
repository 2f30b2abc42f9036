"""An optional rate limit on /v1/*: a token bucket per API key, or per client
address when no keys are configured.

``[gateway] rate_limit = "100/minute"`` lets each key make 100 requests a
minute, in bursts of up to 100, refilled evenly (one every 0.6 s). A request
over it is answered 429 ``rate_limit_exceeded`` with ``Retry-After`` (whole
seconds until one would be allowed) and OpenAI's ``x-ratelimit-*`` headers, in
Anthropic's envelope on the Messages API. The check runs after the API key's,
so a wrong key is a 401 and spends nothing.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.anthropic_errors import error_response
from gateway.errors import APIError
from gateway.security import presented_key
from protocol.config import parse_rate_limit

# Buckets kept before idle ones (full again, so forgetting them changes
# nothing) are dropped: a stream of new client addresses cannot grow memory.
MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    tokens: float
    updated: float


class RateLimiter:
    """``requests`` per ``period`` seconds for each client, bursts up to ``requests``."""

    def __init__(
        self,
        requests: int,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.requests = requests
        self.period = period
        self._rate = requests / period  # tokens per second
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_setting(cls, setting: str | None) -> RateLimiter | None:
        if setting is None:
            return None
        return cls(*parse_rate_limit(setting))

    def acquire(self, client: str) -> float:
        """Take one request for ``client``: 0 if allowed, else the seconds until
        one would be (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._forget_idle(now)
            bucket = self._buckets[client] = TokenBucket(float(self.requests), now)
        bucket.tokens = min(self.requests, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.requests / self._rate
        idle = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key in idle:
            del self._buckets[key]


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter | None, by_key: bool) -> None:
        self.app = app
        self.limiter = limiter
        self.by_key = by_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter
        path = scope.get("path", "")
        if (
            limiter is None
            or scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not path.startswith("/v1/")
            or path.startswith("/v1/images/files/")  # capability URLs, fetched by browsers
        ):
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        wait = limiter.acquire(client)
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        error = APIError(
            429,
            f"rate limit reached: at most {limiter.requests} requests per "
            f"{_period(limiter.period)}; retry in {wait:.1f}s",
            code="rate_limit_exceeded",
            headers={
                "Retry-After": str(max(1, math.ceil(wait))),
                "x-ratelimit-limit-requests": str(limiter.requests),
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{wait:.3f}s",
            },
        )
        if path.startswith("/v1/messages"):
            response = error_response(error, scope.get("state", {}).get("request_id"))
        else:
            response = error.response()
        _name_route(scope)
        await response(scope, receive, send)

    def _client(self, scope: Scope) -> str:
        """The bucket's name: the key's digest (not the key), else the address."""
        if self.by_key:
            return "key:" + hashlib.sha256(presented_key(Headers(scope=scope))).hexdigest()
        client = scope.get("client")
        return "addr:" + (client[0] if client else "unknown")


def _name_route(scope: Scope) -> None:
    """Leave the route the request was for in its scope, as the router would
    have: the request metrics count the 429 under that route's template."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        if route.matches(scope)[0] == Match.FULL:
            scope["route"] = route
            return


def _period(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds == size:
            return unit
        if seconds % size == 0:
            return f"{int(seconds // size)} {unit}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"
