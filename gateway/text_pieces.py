"""A text job's output as :class:`Piece` objects, streamed or collected.

Shared by chat, text completions and the Messages API: each batch a
:class:`~gateway.job_stream.JobStream` yields becomes one piece (its text,
reasoning, logprobs and tool-call pieces joined), the last piece carries the
job's ``Finished``. Failures and the release of the job are the stream's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.errors import APIError
from gateway.job_stream import JobOutput, JobStream
from protocol.messages import Delta, Finished, TokenLogprob, ToolCall


@dataclass
class Piece:
    """Text a job produced since the last piece; ``finished`` on its last."""

    text: str
    logprobs: list[TokenLogprob] | None
    finished: Finished | None
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


def piece_of(batch: list[JobOutput]) -> Piece:
    outputs = [e for e in batch if isinstance(e, Delta | Finished)]
    logprobs = None
    if any(e.logprobs is not None for e in outputs):
        logprobs = [lp for e in outputs for lp in e.logprobs or ()]
    finished = batch[-1] if isinstance(batch[-1], Finished) else None
    return Piece(
        "".join(e.text for e in outputs),
        logprobs,
        finished,
        "".join(e.reasoning for e in outputs),
        [c for e in outputs for c in e.tool_calls],
    )


async def pieces(stream: JobStream) -> AsyncIterator[Piece]:
    """The job's output as it arrives; the last piece carries its Finished."""
    async for batch in stream.batches():
        yield piece_of(batch)


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
            task.cancel()  # each pump's stream closes (and so cancels) its job
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
