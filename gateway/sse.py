"""Server-sent events: one encoder for every streamed API, and the response that carries them.

OpenAI's streams are ``data:`` lines ended by ``data: [DONE]``; Anthropic's
and OpenAI's image streams also name each event (``event: <name>``). Once the
200 and its headers are sent, an error can only be one more event: the
response turns any exception raised while streaming into the API's error
event, so the stream ends properly and the connection stays usable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from starlette.responses import StreamingResponse

from gateway.errors import APIError, internal_error

DONE = b"data: [DONE]\n\n"


def sse_event(data: msgspec.Struct, name: str | None = None) -> bytes:
    """One event: ``data:`` the JSON of ``data``, after ``event: name`` if named."""
    line = b"data: " + msgspec.json.encode(data) + b"\n\n"
    return line if name is None else b"event: " + name.encode() + b"\n" + line


def openai_error_event(exc: APIError) -> bytes:
    """OpenAI's SDKs raise on a ``data:`` line holding ``{"error": ...}``."""
    return sse_event(exc.body())


def sse_response(
    events: AsyncIterator[bytes], error_event: Callable[[APIError], bytes] = openai_error_event
) -> StreamingResponse:
    """A streamed response of ``events``; an error raised while streaming
    becomes its last event, ``error_event(error)`` (an unexpected one a 500)."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        except APIError as exc:
            yield error_event(exc)
        except Exception as exc:
            yield error_event(internal_error(exc))

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
