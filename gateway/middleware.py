"""ASGI middleware: request ids and process time with an access log line and
request metrics, API keys (inference and admin), and the last word on errors
nothing else answered."""

from __future__ import annotations

import time

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import phase4
from gateway.errors import APIError, internal_error
from gateway.metrics import RequestMetrics
from gateway.security import key_matches, presented_key

log = structlog.get_logger()


class RequestIDMiddleware:
    """Accept ``X-Request-ID`` (or generate one) and ``X-House-ID``, echo them
    on the response with ``X-Process-Time`` (seconds until the response
    started), and log one line per request with them (every log line of the
    request carries them; see :mod:`gateway.phase4`)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The ids may still change (a body's metadata): read them from here.
        correlation = phase4.install(scope)
        scope["state"]["request_id"] = correlation.request_id
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = correlation.request_id
                if correlation.house_id is not None:
                    headers["X-House-ID"] = correlation.house_id
                headers["X-Process-Time"] = f"{time.perf_counter() - started:.4f}"
            await send(message)

        with structlog.contextvars.bound_contextvars(**correlation.log_context(), model=None):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                # The router leaves the matched route in the scope: its template
                # labels the metrics (bounded), the real path goes to the log.
                route = scope.get("route")
                self.metrics.observe(getattr(route, "path", "other"), status, seconds)
                # Probes come every few seconds from monitors: debug only.
                emit = log.debug if scope["path"] in ("/health", "/metrics") else log.info
                emit(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status or None,
                    ms=round(1000 * seconds, 1),
                    **correlation.log_context(),
                )


class APIKeyMiddleware:
    """When keys are configured, /v1/* and /admin/* need ``Authorization: Bearer <key>``
    or, as Anthropic's clients send it, ``x-api-key: <key>``.

    /admin/* takes the ``admin_keys`` (or, if there are none, the ``api_keys``);
    an inference key there is a 403. An admin key works on /v1/* too.
    """

    def __init__(self, app: ASGIApp, keys: list[str], admin_keys: list[str] | None = None) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.admin_keys = [k.encode() for k in admin_keys or []]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":  # CORS preflights: no keys
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        admin = path.startswith("/admin/")
        # Generated images' URLs are capabilities (128 random bits, expiring),
        # fetched by browsers and <img> tags that send no key, as OpenAI's are.
        guarded = admin or (path.startswith("/v1/") and not path.startswith("/v1/images/files/"))
        if admin:
            allowed = self.admin_keys or self.keys
        else:
            allowed = self.keys + self.admin_keys if self.keys else []
        if guarded and allowed:
            token = presented_key(Headers(scope=scope))
            if not key_matches(token, allowed):
                if admin and self.admin_keys and key_matches(token, self.keys):
                    error = APIError(
                        403,
                        "this API key may not use the admin API: send one of the admin_keys",
                        code="admin_key_required",
                    )
                else:
                    error = APIError(
                        401,
                        "Incorrect API key provided. "
                        "Send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                        code="invalid_api_key",
                    )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class UnhandledErrorMiddleware:
    """Answer an exception a handler did not expect (a bug) with a 500
    envelope, and keep the connection.

    Starlette's own 500 handler answers, then re-raises so that the server
    sees the error, and uvicorn then closes the connection: a keep-alive
    client lost its next request too. Here the error is logged and goes no
    further; a response already under way is ended where it is.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = ended = False

        async def watched_send(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            error = internal_error(exc)
            if not started:
                await error.response()(scope, receive, send)
            elif not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
