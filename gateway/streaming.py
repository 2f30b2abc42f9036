"""Turning a worker's job events into response text, streamed or collected.

Shared by chat and text completions: the job's events become :class:`Piece`
objects, a failure or timeout becomes an :class:`APIError`, and leaving early
(client gone) cancels the job in the worker, freeing its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import StreamingResponse

from gateway.errors import APIError
from gateway.worker_client import JobStream
from protocol.messages import Delta, Finished, JobFailed, TokenLogprob, ToolCall

SSE_DONE = b"data: [DONE]\n\n"
T = TypeVar("T")


@dataclass
class Piece:
    """Text a job produced since the last piece; ``finished`` on its last."""

    text: str
    logprobs: list[TokenLogprob] | None
    finished: Finished | None
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


async def pieces(stream: JobStream) -> AsyncIterator[Piece]:
    """Yield the job's output as it arrives; the last piece carries its Finished."""
    try:
        while True:
            batch = await stream.next_batch()
            end = batch[-1]
            if isinstance(end, JobFailed):
                raise APIError(end.status, end.message, code=end.code, param=end.param)
            outputs = [e for e in batch if isinstance(e, Delta | Finished)]
            logprobs = None
            if any(e.logprobs is not None for e in outputs):
                logprobs = [lp for e in outputs for lp in e.logprobs or ()]
            finished = end if isinstance(end, Finished) else None
            text = "".join(e.text for e in outputs)
            reasoning = "".join(e.reasoning for e in outputs)
            calls = [c for e in outputs for c in e.tool_calls]
            yield Piece(text, logprobs, finished, reasoning, calls)
            if finished is not None:
                return
    finally:
        stream.close()


async def merged_pieces(streams: list[JobStream]) -> AsyncIterator[tuple[int, Piece]]:
    """The pieces of several jobs (the ``n`` choices of one request) as they come."""
    if len(streams) == 1:
        async for piece in pieces(streams[0]):
            yield 0, piece
        return
    queue: asyncio.Queue[tuple[int, Piece | APIError]] = asyncio.Queue()

    async def pump(index: int, stream: JobStream) -> None:
        try:
            async for piece in pieces(stream):
                queue.put_nowait((index, piece))
        except APIError as exc:
            queue.put_nowait((index, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    running = len(streams)
    try:
        while running:
            index, item = await queue.get()
            if isinstance(item, APIError):
                raise item
            yield index, item
            running -= item.finished is not None
    finally:
        for task in tasks:
            task.cancel()  # each pump's pieces() closes (and so cancels) its job
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(streams: list[JobStream]) -> list[Piece]:
    """Every job's whole output, in the order of ``streams``."""
    texts: list[list[str]] = [[] for _ in streams]
    reasoning: list[list[str]] = [[] for _ in streams]
    logprobs: list[list[TokenLogprob] | None] = [None for _ in streams]
    done: list[Finished | None] = [None for _ in streams]
    calls: list[list[ToolCall]] = [[] for _ in streams]
    async for index, piece in merged_pieces(streams):
        calls[index].extend(piece.tool_calls)
        texts[index].append(piece.text)
        reasoning[index].append(piece.reasoning)
        if piece.logprobs is not None:
            logprobs[index] = (logprobs[index] or []) + piece.logprobs
        done[index] = piece.finished
    return [
        Piece("".join(t), lp, f, "".join(r), merge_calls(c))
        for t, lp, f, r, c in zip(texts, logprobs, done, reasoning, calls, strict=True)
    ]


def merge_calls(calls: list[ToolCall]) -> list[ToolCall]:
    """Whole calls from a job's call pieces: a call whose id came before
    continues that call with more argument text."""
    merged: dict[str, ToolCall] = {}
    for call in calls:
        known = merged.get(call.id)
        if known is None:
            merged[call.id] = ToolCall(call.id, call.name, call.arguments)
        else:
            known.arguments += call.arguments
    return list(merged.values())


class ClientGone(Exception):
    """The client disconnected before a non-streamed answer was ready."""


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (:class:`ClientGone`) as soon as the client
    disconnects. Work that reads job streams closes them when cancelled, which
    cancels the jobs in the worker.

    The body has been read, so the next ASGI ``receive`` only returns when the
    client goes away (``http.disconnect``).
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone
    return task.result()


async def collect_while_connected(request: Request, streams: list[JobStream]) -> list[Piece]:
    """:func:`collect`, but cancel the jobs as soon as the client disconnects."""
    return await while_connected(request, collect(streams))


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
