"""The Response a job's output builds, and the streaming events that tell it.

One :class:`ResponseBuilder` serves both a streamed and a whole answer: the
job's pieces go in, output items open and close as their content arrives
(a reasoning item, a message, one ``function_call`` item per call), and each
step yields the Open Responses events in order, numbered by
``sequence_number``. A whole answer is the builder's final Response with its
events dropped, so streamed and non-streamed answers cannot differ.

Reasoning text streams as ``response.reasoning_text.delta`` (OpenAI's name,
and the spec's since its events were renamed); whitespace-only text is held
back until more text shows it is not just the gap before a tool call, as
chat and Anthropic answers do.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.errors import APIError
from gateway.responses_input import encode_reasoning, new_id
from gateway.responses_objects import (
    Content,
    FunctionCallItem,
    IncompleteDetails,
    InputTokensDetails,
    Logprob,
    MessageItem,
    OutputItem,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponseUsage,
    TopLogprob,
)
from gateway.text_pieces import Piece
from protocol.messages import Finished, TokenLogprob, ToolCall

# --- events ----------------------------------------------------------------------------


class _Lifecycle(msgspec.Struct):
    sequence_number: int
    response: Response


class ResponseCreated(_Lifecycle, tag="response.created"):
    pass


class ResponseInProgress(_Lifecycle, tag="response.in_progress"):
    pass


class ResponseCompleted(_Lifecycle, tag="response.completed"):
    pass


class ResponseIncomplete(_Lifecycle, tag="response.incomplete"):
    pass


class ResponseFailed(_Lifecycle, tag="response.failed"):
    pass


class OutputItemAdded(msgspec.Struct, tag="response.output_item.added"):
    sequence_number: int
    output_index: int
    item: OutputItem


class OutputItemDone(msgspec.Struct, tag="response.output_item.done"):
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartAdded(msgspec.Struct, tag="response.content_part.added"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: Content


class ContentPartDone(msgspec.Struct, tag="response.content_part.done"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: Content


class OutputTextDelta(msgspec.Struct, tag="response.output_text.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Logprob]


class OutputTextDone(msgspec.Struct, tag="response.output_text.done"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Logprob]


class ReasoningTextDelta(msgspec.Struct, tag="response.reasoning_text.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningTextDone(msgspec.Struct, tag="response.reasoning_text.done"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str


class ArgumentsDelta(msgspec.Struct, tag="response.function_call_arguments.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(msgspec.Struct, tag="response.function_call_arguments.done"):
    sequence_number: int
    item_id: str
    output_index: int
    arguments: str
    name: str


class ErrorPayload(msgspec.Struct):
    type: str
    code: str | None
    message: str
    param: str | None


class ErrorEvent(msgspec.Struct, tag="error"):
    """The spec's ``error`` object, and OpenAI's flat fields beside it."""

    sequence_number: int
    error: ErrorPayload
    code: str | None
    message: str
    param: str | None


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | ReasoningTextDelta
    | ReasoningTextDone
    | ArgumentsDelta
    | ArgumentsDone
    | ErrorEvent
)
Event = Any  # one of StreamEvent's Structs


def encode_event(event: Event) -> bytes:
    """One SSE event whose ``event:`` line is its type, as the spec has it."""
    name = str(event.__struct_config__.tag)
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"


# --- the builder -----------------------------------------------------------------------


def now() -> int:
    return int(time.time())


class ResponseBuilder:
    def __init__(
        self,
        response: Response,
        *,
        encrypted_reasoning: bool = False,
        logprobs: bool = False,
        namespaces: dict[str, str] | None = None,
        max_calls: int | None = None,
    ) -> None:
        self.response = response
        self._encrypted = encrypted_reasoning
        self._logprobs = logprobs
        self._namespaces = namespaces or {}
        self._max_calls = max_calls
        self._seq = 0
        self._open: OutputItem | None = None
        self._text: list[str] = []  # the open item's text so far
        self._open_logprobs: list[Logprob] = []
        self._held = ""  # whitespace-only text not sent yet
        self._calls: dict[str, FunctionCallItem] = {}
        self._dropped: set[str] = set()  # calls past max_calls / parallel_tool_calls

    def _next(self) -> int:
        self._seq += 1
        return self._seq - 1

    def _snapshot(self) -> Response:
        return msgspec.structs.replace(self.response, output=list(self.response.output))

    def start(self) -> list[Event]:
        return [
            ResponseCreated(self._next(), self._snapshot()),
            ResponseInProgress(self._next(), self._snapshot()),
        ]

    def feed(self, piece: Piece) -> list[Event]:
        events: list[Event] = []
        if piece.reasoning:
            events += self._reasoning(piece.reasoning)
        text, self._held = self._held + piece.text, ""
        if text:
            if text.strip() or isinstance(self._open, MessageItem):
                events += self._message_text(text, piece.logprobs)
            elif not self._calls:
                self._held = text  # maybe only the gap before a call
        for call in piece.tool_calls:
            events += self._call(call)
        return events

    def finish(self, finished: Finished) -> list[Event]:
        events: list[Event] = []
        if self._held and not self._calls:
            events += self._message_text(self._held, None)
        self._held = ""
        incomplete = finished.finish_reason == "length"
        events += self._close("incomplete" if incomplete else "completed")
        if not self.response.output:
            events += self._message_text("", None)
            events += self._close("incomplete" if incomplete else "completed")
        usage = finished.usage
        response = self.response
        response.usage = ResponseUsage(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.prompt_tokens + usage.completion_tokens,
            InputTokensDetails(usage.cached_tokens),
            OutputTokensDetails(usage.reasoning_tokens),
        )
        response.completed_at = now()
        if incomplete:
            response.status = "incomplete"
            response.incomplete_details = IncompleteDetails("max_output_tokens")
            events.append(ResponseIncomplete(self._next(), self._snapshot()))
        else:
            response.status = "completed"
            events.append(ResponseCompleted(self._next(), self._snapshot()))
        return events

    def fail(self, exc: APIError) -> list[Event]:
        """An error after the stream began: the open item ends incomplete,
        then an ``error`` event and ``response.failed``."""
        events = self._close("incomplete")
        body = exc.body().error
        events.append(
            ErrorEvent(
                self._next(),
                ErrorPayload(body.type, body.code, body.message, body.param),
                body.code,
                body.message,
                body.param,
            )
        )
        self.response.status = "failed"
        self.response.error = ResponseError(exc.code or body.type, exc.message)
        events.append(ResponseFailed(self._next(), self._snapshot()))
        return events

    def cancelled(self) -> None:
        """The job was cancelled (background responses): what was made stays."""
        self._close("incomplete")
        self.response.status = "cancelled"

    # --- items ---------------------------------------------------------------------

    def _add(self, item: OutputItem) -> list[Event]:
        self._open, self._text, self._open_logprobs = item, [], []
        self.response.output.append(item)
        return [OutputItemAdded(self._next(), len(self.response.output) - 1, _copy(item))]

    def _close(self, status: str) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self.response.output) - 1
        text = "".join(self._text)
        events: list[Event] = []
        if isinstance(item, ReasoningItem):
            part = ReasoningText(text)
            events.append(ReasoningTextDone(self._next(), item.id, index, 0, text))
            events.append(ContentPartDone(self._next(), item.id, index, 0, part))
            item.content = [part]
            if self._encrypted:
                item.encrypted_content = encode_reasoning(text)
        elif isinstance(item, MessageItem):
            logprobs = self._open_logprobs
            events.append(OutputTextDone(self._next(), item.id, index, 0, text, logprobs))
            out = OutputText(text, [], logprobs)
            events.append(ContentPartDone(self._next(), item.id, index, 0, out))
            item.content = [out]
            item.status = status  # type: ignore[assignment]
        else:
            events.append(ArgumentsDone(self._next(), item.id, index, item.arguments, item.name))
            item.status = status  # type: ignore[assignment]
        events.append(OutputItemDone(self._next(), index, _copy(item)))
        return events

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if not isinstance(item, ReasoningItem):
            events += self._close("completed")
            item = ReasoningItem(new_id("rs"), summary=[], content=[])
            events += self._add(item)
            part = ReasoningText("")
            events.append(ContentPartAdded(self._next(), item.id, self._index(), 0, part))
        self._text.append(text)
        events.append(ReasoningTextDelta(self._next(), item.id, self._index(), 0, text))
        return events

    def _message_text(self, text: str, logprobs: list[TokenLogprob] | None) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if not isinstance(item, MessageItem):
            events += self._close("completed")
            item = MessageItem(new_id("msg"), "in_progress", "assistant", [])
            events += self._add(item)
            part = OutputText("", [], [])
            events.append(ContentPartAdded(self._next(), item.id, self._index(), 0, part))
        out = _logprobs(logprobs) if self._logprobs else []
        self._text.append(text)
        self._open_logprobs += out
        if text or out:
            events.append(OutputTextDelta(self._next(), item.id, self._index(), 0, text, out))
        return events

    def _call(self, call: ToolCall) -> list[Event]:
        if call.id in self._dropped:
            return []
        known = self._calls.get(call.id)
        if known is None:
            if self._max_calls is not None and len(self._calls) >= self._max_calls:
                self._dropped.add(call.id)
                return []
            events = self._close("completed")
            known = FunctionCallItem(
                new_id("fc"),
                call.id,
                call.name,
                "",
                "in_progress",
                self._namespaces.get(call.name),
            )
            self._calls[call.id] = known
            events += self._add(known)
        else:
            events = []
        known.arguments += call.arguments
        if call.arguments and known is self._open:
            events.append(ArgumentsDelta(self._next(), known.id, self._index(), call.arguments))
        return events

    def _index(self) -> int:
        return len(self.response.output) - 1


def _copy(item: OutputItem) -> OutputItem:
    """The item as it is now (events are encoded later, and items change)."""
    if isinstance(item, MessageItem):
        return msgspec.structs.replace(item, content=list(item.content))
    return msgspec.structs.replace(item)


def _logprobs(tokens: list[TokenLogprob] | None) -> list[Logprob]:
    return [
        Logprob(
            t.token, t.logprob, t.bytes, [TopLogprob(a.token, a.logprob, a.bytes) for a in t.top]
        )
        for t in tokens or ()
    ]
