"""POST /v1/messages: Anthropic's Messages API on the same LLM workers.

A request becomes the same :class:`~protocol.messages.ChatJob` a chat
completion does; only the shapes at the edges differ. Errors use Anthropic's
envelope (``{"type": "error", "error": {"type", "message"}}``) with the HTTP
statuses the rest of the gateway uses, so every :class:`APIError` raised
below (body limits, registry 404, worker 503/429, timeouts) is converted
here rather than by the global OpenAI-shaped handlers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.anthropic_schemas import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    CountTokensRequest,
    ErrorDetail,
    ErrorResponse,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageIn,
    MessagesRequest,
    MessageStart,
    MessageStop,
    Ping,
    StopReason,
    StreamEvent,
    TextBlock,
    TextBlockIn,
    TextDelta,
    TokenCount,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlockIn,
    ToolUseBlock,
    ToolUseBlockIn,
    Usage,
)
from gateway.body import decode_json
from gateway.errors import APIError
from gateway.generation import ToolSetup, tool_setup
from gateway.registry import TEXT_FAMILIES
from gateway.schemas import (
    ChatCompletionRequest,
    FunctionDef,
    NamedFunction,
    NamedToolChoice,
    ToolDef,
)
from gateway.streaming import ClientGone, collect_while_connected, pieces, sse_response
from gateway.worker_client import JobStream
from protocol.messages import ChatJob, ChatMessage, Finished, SamplingParams, ToolCall

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


async def messages(request: Request) -> Response:
    try:
        return await _messages(request)
    except APIError as exc:
        return error_response(exc, getattr(request.state, "request_id", None))


async def count_tokens(request: Request) -> Response:
    """POST /v1/messages/count_tokens: the prompt's tokens as the model's chat
    template and tokenizer make them (tools included), counted by its worker."""
    try:
        count = await decode_json(request, CountTokensRequest)
        body = MessagesRequest(
            count.model,
            1,
            count.messages,
            count.system,
            tools=count.tools,
            tool_choice=count.tool_choice,
            thinking=count.thinking,
        )
        worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
        _reject_unsupported(body)
        tools = _tool_setup(body)
        job = ChatJob(
            worker.new_job_id(),
            _job_messages(body),
            SamplingParams(max_tokens=1),
            tools.tools,
            tools.mode,
            count_only=True,
        )
        (whole,) = await collect_while_connected(request, [worker.submit(job)])
    except APIError as exc:
        return error_response(exc, getattr(request.state, "request_id", None))
    except ClientGone:
        return Response(status_code=499)
    assert whole.finished is not None
    reply = TokenCount(whole.finished.usage.prompt_tokens)
    return Response(msgspec.json.encode(reply), media_type="application/json")


def _job_messages(body: MessagesRequest) -> list[ChatMessage]:
    job_messages = _system(body.system)
    for i, m in enumerate(body.messages):
        job_messages.extend(_to_protocol(i, m))
    return job_messages


async def _messages(request: Request) -> Response:
    body = await decode_json(request, MessagesRequest)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    _reject_unsupported(body)
    tools = _tool_setup(body)
    job_messages = _job_messages(body)
    params = SamplingParams(
        max_tokens=body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,  # Anthropic's default
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_sequences or [],
        top_k=body.top_k or 0,  # 0: no top-k filter
        json_schema=tools.json_schema,  # a forced call's grammar
    )
    job = ChatJob(worker.new_job_id(), job_messages, params, tools.tools, tools.mode)
    stream = worker.submit(job)
    model = worker.model.name
    if body.stream:
        return sse_response(_events(stream, model))
    try:
        (whole,) = await collect_while_connected(request, [stream])
    except ClientGone:
        return Response(status_code=499)  # nobody is listening (nginx's "client closed")
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


async def _events(stream: JobStream, model: str) -> AsyncIterator[bytes]:
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
    try:
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
    except APIError as exc:
        # The 200 and its headers are gone: an error event is all a client can get.
        # Caught here, not by sse_response, whose error event is OpenAI's.
        yield event(error_body(exc))


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


def _reject_unsupported(body: MessagesRequest) -> None:
    """400 naming the first field this server cannot honour yet.

    Ignoring them would answer a different request than the one sent (no
    thinking, no structured output) without saying so.
    """
    for i, tool in enumerate(body.tools or ()):
        if tool.type not in (None, "custom"):
            _unsupported(
                f"tools[{i}].type",
                f"server tools ({tool.type!r}) are not supported by this server; "
                "only client tools (an 'input_schema') are",
            )
        if tool.input_schema is None:
            _unsupported(f"tools[{i}].input_schema", "a tool needs an 'input_schema'")
    disabled = isinstance(body.thinking, dict) and body.thinking.get("type") == "disabled"
    if body.thinking is not None and not disabled:
        _unsupported("thinking", "extended thinking is not supported by this server yet")
    if body.output_config is not None and body.output_config.format is not None:
        _unsupported(
            "output_config.format", "structured outputs are not supported by this server yet"
        )
    last = len(body.messages) - 1
    if body.messages[last].role == "assistant":
        # Anthropic continues a final assistant message ("prefill"); the worker
        # always opens a new assistant turn, so it would answer something else.
        _unsupported(
            f"messages[{last}].role",
            "a final assistant message (prefill) is not supported by this server yet",
        )


def _unsupported(param: str, message: str) -> NoReturn:
    raise APIError(400, message, param=param)


def _system(system: str | list[TextBlockIn] | None) -> list[ChatMessage]:
    if isinstance(system, list):
        system = "".join(block.text for block in system)
    return [ChatMessage(role="system", content=system)] if system else []


def _tool_setup(body: MessagesRequest) -> ToolSetup:
    """``tools``/``tool_choice`` checked and decided exactly as for a chat
    completion (generation.tool_setup), with 400s naming Anthropic's fields."""
    choice: str | NamedToolChoice | None
    match body.tool_choice:
        case None:
            choice = None
        case ToolChoiceAny():
            choice = "required"
        case ToolChoiceTool(name=name):
            choice = NamedToolChoice("function", NamedFunction(name))
        case ToolChoiceNone():
            choice = "none"
        case _:
            choice = "auto"
    tools = [
        ToolDef("function", FunctionDef(t.name, t.description, t.input_schema or {}))
        for t in body.tools or ()
    ]
    as_chat = ChatCompletionRequest(body.model, [], tools=tools or None, tool_choice=choice)
    try:
        return tool_setup(as_chat)
    except APIError as exc:
        rename = {".function.parameters": ".input_schema", ".function.name": ".name"}
        message, param = exc.message, exc.param
        for old, new in rename.items():
            message = message.replace(old, new)
            param = param.replace(old, new) if param is not None else None
        message = message.replace("a function's parameters", "a tool's input_schema")
        raise APIError(exc.status, message, param=param) from None


def _to_protocol(index: int, message: MessageIn) -> list[ChatMessage]:
    """One message as the job's messages: an assistant turn with its tool_use
    blocks as ``tool_calls``; a user turn's tool_result blocks as "tool"
    messages (in the order given), then its text, if any, as a user message."""
    content = message.content
    if isinstance(content, str):
        return [ChatMessage(role=message.role, content=content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(content):
        where = f"messages[{index}].content[{j}]"
        if isinstance(block, TextBlockIn):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlockIn) and message.role == "assistant":
            arguments = msgspec.json.encode(block.input).decode()
            calls.append(ToolCall(block.id, block.name, arguments))
        elif isinstance(block, ToolResultBlockIn) and message.role == "user":
            result = _result_text(block, where)
            results.append(ChatMessage(role="tool", content=result, tool_call_id=block.tool_use_id))
        elif isinstance(block, ToolUseBlockIn | ToolResultBlockIn):
            kind = block.__struct_config__.tag
            other = "assistant" if message.role == "user" else "user"
            _unsupported(where, f"'{kind}' blocks belong in {other} messages")
        else:
            kind = block.__struct_config__.tag
            _unsupported(
                where,
                f"'{kind}' content blocks are not supported by this server yet; "
                "only 'text', 'tool_use' and 'tool_result' blocks are",
            )
    # Joined as sent, nothing added between blocks (as chat.py joins text parts).
    text = "".join(texts)
    if message.role == "assistant":
        return [ChatMessage(role="assistant", content=text, tool_calls=calls or None)]
    if results and not text:
        return results  # only results: no empty user turn after them
    return [*results, ChatMessage(role="user", content=text)]


def _result_text(block: ToolResultBlockIn, where: str) -> str:
    content = block.content
    if isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            if not isinstance(part, TextBlockIn):
                kind = part.__struct_config__.tag
                _unsupported(
                    f"{where}.content[{k}]",
                    f"'{kind}' blocks in a tool result are not supported by this server yet",
                )
            parts.append(part.text)
        content = "".join(parts)
    text = content or ""
    return f"Error: {text}" if block.is_error else text


def _tool_use_id(call_id: str) -> str:
    """Anthropic's id for a call the worker made (``call_...`` -> ``toolu_...``)."""
    return "toolu_" + call_id.removeprefix("call_")


def _input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the tool_use block's ``input``; a call cut short
    (max_tokens) is no JSON object: its input is then empty."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- encoding --------------------------------------------------------------------


def event(data: StreamEvent) -> bytes:
    """One SSE event; its name is the payload's ``type`` tag, as Anthropic sends it."""
    name = str(data.__struct_config__.tag)
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


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


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"
