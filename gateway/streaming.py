"""Turning a worker's job events into response text, streamed or collected.

Shared by chat and text completions: the job's events become ``(text,
finished)`` pieces, a failure or timeout becomes an :class:`APIError`, and
leaving early (client gone) cancels the job in the worker, freeing its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import StreamingResponse

from gateway.errors import APIError
from gateway.worker_client import JobStream
from protocol.messages import Delta, Finished, JobFailed

SSE_DONE = b"data: [DONE]\n\n"


async def pieces(stream: JobStream) -> AsyncIterator[tuple[str, Finished | None]]:
    """Yield the job's text as it arrives; the last piece carries its Finished."""
    try:
        while True:
            batch = await stream.next_batch()
            end = batch[-1]
            if isinstance(end, JobFailed):
                raise APIError(end.status, end.message, code=end.code)
            text = "".join(e.text for e in batch if isinstance(e, Delta | Finished))
            finished = end if isinstance(end, Finished) else None
            yield text, finished
            if finished is not None:
                return
    finally:
        stream.close()


async def collect(stream: JobStream) -> tuple[str, Finished]:
    parts: list[str] = []
    async for text, finished in pieces(stream):
        parts.append(text)
        if finished is not None:
            return "".join(parts), finished
    raise AssertionError("pieces() ends with a Finished or raises")


class ClientGone(Exception):
    """The client disconnected before a non-streamed answer was ready."""


async def collect_while_connected(request: Request, stream: JobStream) -> tuple[str, Finished]:
    """:func:`collect`, but cancel the job as soon as the client disconnects.

    The body has been read, so the next ASGI ``receive`` only returns when the
    client goes away (``http.disconnect``).
    """
    work = asyncio.ensure_future(collect(stream))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()  # collect's finally cancels the job in the worker
            with contextlib.suppress(asyncio.CancelledError):
                await work
    if work.cancelled():
        raise ClientGone
    return work.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def sse(data: msgspec.Struct) -> bytes:
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    """An SSE response; an error after the headers went out becomes an error event.

    OpenAI's SDKs raise on a ``data:`` line holding ``{"error": ...}``.
    """

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event
        except APIError as exc:
            yield sse(exc.body())

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
