"""A finished chat job as Anthropic's ``Message``: whole, or as the stream of
events that builds it (``message_start``, content blocks, ``message_delta``,
``message_stop``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.responses import Response

from gateway.anthropic_errors import error_body
from gateway.anthropic_schemas import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    Ping,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDelta,
    TokenCount,
    ToolUseBlock,
    Usage,
)
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.sse import sse_event
from gateway.text_pieces import collect, pieces
from protocol.messages import Finished, ToolCall


async def whole_message(stream: JobStream, model: str) -> Response:
    (whole,) = await collect([stream])
    finished = whole.finished
    assert finished is not None  # collect() returns once every job has finished
    reason, sequence = stop_reason(finished)
    calls = whole.tool_calls  # merged by collect()
    content: list[TextBlock | ToolUseBlock] = []
    if not calls or whole.text.strip():  # as chat.py: no whitespace-only text beside calls
        content.append(TextBlock(whole.text))
    content.extend(ToolUseBlock(_tool_use_id(c.id), c.name, _input(c.arguments)) for c in calls)
    reply = Message(
        id=_message_id(),
        model=model,
        content=content,
        stop_reason=reason,
        stop_sequence=sequence,
        usage=Usage(finished.usage.prompt_tokens, finished.usage.completion_tokens),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def token_count(stream: JobStream) -> Response:
    """A ``count_only`` job's answer: the prompt's tokens."""
    (whole,) = await collect([stream])
    assert whole.finished is not None
    reply = TokenCount(whole.finished.usage.prompt_tokens)
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def message_events(stream: JobStream, model: str) -> AsyncIterator[bytes]:
    """Anthropic's event sequence: a text block, then a tool_use block per call.

    The worker reports the prompt's token count only with ``Finished``, so
    ``message_start`` says 0 input tokens and ``message_delta`` carries the
    real count (a cumulative total the SDKs let overwrite the start's).

    Blocks open as their content arrives, so a forced call's stream has only
    its tool_use block (index 0). Whitespace-only text is held back until
    more text or the end shows it is not just the gap before a call: the
    streamed blocks are then those of the non-streamed answer.
    """
    start = Message(_message_id(), model, [], None, None, Usage(0, 0))
    yield event(MessageStart(start))
    blocks = _Blocks()
    held = ""  # whitespace-only text, not sent yet
    async for piece in pieces(stream):
        text, held = held + piece.text, ""
        if not text:
            pass
        elif not (text.strip() or blocks.wrote_text):
            if piece.tool_calls or blocks.calls:
                text = ""  # only the gap before (or after) a call: no text block
            elif piece.finished is None:
                text, held = "", text
        if text:
            for out in blocks.text(text):
                yield out
        for call in piece.tool_calls:
            for out in blocks.call(call):
                yield out
        if (finished := piece.finished) is not None:
            if blocks.index < 0:  # nothing at all: one empty text block
                for out in blocks.text(""):
                    yield out
            reason, sequence = stop_reason(finished)
            usage = finished.usage
            yield event(ContentBlockStop(blocks.index))
            yield event(
                MessageDelta(
                    MessageDeltaBody(reason, sequence),
                    MessageDeltaUsage(usage.completion_tokens, usage.prompt_tokens),
                )
            )
            yield event(MessageStop())


class _Blocks:
    """The open content block of a stream, and the events that open the next."""

    def __init__(self) -> None:
        self.index = -1  # the open block's; -1: none opened yet
        self.kind: str | None = None  # "text", or the open tool_use block's call id
        self.calls: dict[str, int] = {}  # call id -> its block's index
        self.wrote_text = False

    def _open(self, kind: str, block: TextBlock | ToolUseBlock) -> list[bytes]:
        out = [event(ContentBlockStop(self.index))] if self.index >= 0 else []
        self.index += 1
        self.kind = kind
        out.append(event(ContentBlockStart(self.index, block)))
        if self.index == 0:
            out.append(event(Ping()))  # where Anthropic sends it: after the first start
        return out

    def text(self, text: str) -> list[bytes]:
        out = [] if self.kind == "text" else self._open("text", TextBlock(""))
        if text:
            out.append(event(ContentBlockDelta(self.index, TextDelta(text))))
            self.wrote_text = True
        return out

    def call(self, call: ToolCall) -> list[bytes]:
        out = []
        at = self.calls.get(call.id)
        if at is None:  # the call's head: its id and name
            out = self._open(call.id, ToolUseBlock(_tool_use_id(call.id), call.name, {}))
            at = self.calls[call.id] = self.index
        if call.arguments:
            out.append(event(ContentBlockDelta(at, InputJSONDelta(call.arguments))))
        return out


def stop_reason(finished: Finished) -> tuple[StopReason, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a finished job."""
    if finished.finish_reason == "length":
        return "max_tokens", None
    if finished.finish_reason == "tool_calls":
        return "tool_use", None
    if finished.stop_sequence is not None:
        return "stop_sequence", finished.stop_sequence
    return "end_turn", None


def _tool_use_id(call_id: str) -> str:
    """Anthropic's id for a call the worker made (``call_...`` -> ``toolu_...``)."""
    return "toolu_" + call_id.removeprefix("call_")


def _input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the tool_use block's ``input``; a call cut short
    (max_tokens) is no JSON object: its input is then empty."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def event(data: StreamEvent) -> bytes:
    """One SSE event; its name is the payload's ``type`` tag, as Anthropic sends it."""
    return sse_event(data, str(data.__struct_config__.tag))


def error_event(exc: APIError) -> bytes:
    """The 200 and its headers are gone: an error event is all a client can get."""
    return event(error_body(exc))


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"
