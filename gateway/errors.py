"""OpenAI-shaped errors, in one place.

Every error the gateway answers is ``{"error": {"message", "type", "param",
"code"}}`` with the matching HTTP status, whatever raised it.
"""

from __future__ import annotations

import msgspec
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = structlog.get_logger()

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class ErrorBody(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> ErrorEnvelope:
        kind = ERROR_TYPES.get(self.status, "server_error")
        return ErrorEnvelope(ErrorBody(self.message, kind, self.param, self.code))

    def response(self) -> Response:
        return Response(
            msgspec.json.encode(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = exc.detail if exc.status_code != 404 else f"no route for {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    return APIError(exc.status_code, message, code=code, headers=headers).response()


def internal_error(exc: Exception) -> APIError:
    """The 500 for an exception nothing expected (a bug), logged with its traceback."""
    log.error("unhandled error", exc_info=exc)
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}")


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's last resort, for an error in a middleware outside
    :class:`~gateway.middleware.UnhandledErrorMiddleware` (which answers the
    handlers' errors without letting them close the connection)."""
    return internal_error(exc).response()


EXCEPTION_HANDLERS = {
    APIError: api_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}
