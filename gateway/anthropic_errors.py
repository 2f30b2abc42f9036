"""Anthropic's error envelope, ``{"type": "error", "error": {"type", "message"}}``,
for every answer of the Messages API.

The gateway's errors are :class:`~gateway.errors.APIError` (body limits,
registry 404, worker 503/429, timeouts) with the HTTP statuses the rest of
the gateway uses; on these routes they are answered here rather than by the
global OpenAI-shaped handlers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.anthropic_schemas import ErrorDetail, ErrorResponse
from gateway.errors import APIError, internal_error

# Anthropic's error types by HTTP status (https://docs.claude.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",  # a worker loading, restarting or failed: retry later
    504: "timeout_error",
}

Handler = Callable[[Request], Awaitable[Response]]


def anthropic_errors(handler: Handler) -> Handler:
    """``handler`` with every error it raises answered in Anthropic's envelope
    (one nothing expected as a 500)."""

    @functools.wraps(handler)
    async def answering(request: Request) -> Response:
        try:
            return await handler(request)
        except APIError as exc:
            return error_response(exc, getattr(request.state, "request_id", None))
        except Exception as exc:
            return error_response(internal_error(exc), getattr(request.state, "request_id", None))

    return answering


def error_body(exc: APIError, request_id: str | None = None) -> ErrorResponse:
    kind = ERROR_TYPES.get(exc.status) or (
        "api_error" if exc.status >= 500 else "invalid_request_error"
    )
    message = exc.message if exc.param is None else f"{exc.param}: {exc.message}"
    return ErrorResponse(ErrorDetail(kind, message), request_id)


def error_response(exc: APIError, request_id: str | None) -> Response:
    return Response(
        msgspec.json.encode(error_body(exc, request_id)),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,  # Retry-After on a 429
    )
