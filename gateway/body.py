"""Reading a request body: size limit (413), JSON and schema validation (400)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import TypeVar

import msgspec
from starlette.requests import Request

from gateway.errors import APIError

T = TypeVar("T")

_PATH = re.compile(r"at `\$\.?([^`]*)`")


async def read_limited(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in stream_limited(request, limit, _too_large(limit))])


async def stream_limited(
    request: Request, limit: int, too_large: APIError
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, raising ``too_large`` (a 413) as soon as it is known
    to exceed ``limit``: from its Content-Length, or while it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        yield chunk


async def decode_json(request: Request, schema: type[T]) -> T:
    """Decode and validate a JSON body; errors name the offending field."""
    body = await read_limited(request, request.app.state.config.gateway.max_body_bytes)
    if not body:
        raise APIError(400, "the request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise invalid_request(exc) from exc
    except msgspec.DecodeError as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise APIError(400, "the request body's JSON is nested too deeply") from None


def invalid_request(exc: msgspec.ValidationError) -> APIError:
    """A 400 for a request that failed its schema, naming the field msgspec names."""
    match = _PATH.search(str(exc))
    param = match.group(1) if match and match.group(1) else None
    if param is None and "missing required field" in str(exc):
        param = str(exc).rsplit("`", 2)[-2] if "`" in str(exc) else None
    return APIError(400, f"invalid request: {exc}", param=param)


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than the limit of {limit} bytes",
        code="request_too_large",
    )
