"""POST /v1/messages: Anthropic's Messages API on the same LLM workers.

A request becomes the same :class:`~protocol.messages.ChatJob` a chat
completion does; only the shapes at the edges differ. Errors use Anthropic's
envelope (``{"type": "error", "error": {"type", "message"}}``) with the HTTP
statuses the rest of the gateway uses, so every :class:`APIError` raised
below (body limits, registry 404, worker 503/429, timeouts) is converted
here rather than by the global OpenAI-shaped handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import NoReturn

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.anthropic_schemas import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ErrorDetail,
    ErrorResponse,
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
    Usage,
)
from gateway.body import decode_json
from gateway.errors import APIError
from gateway.streaming import ClientGone, collect_while_connected, pieces, sse_response
from gateway.worker_client import JobStream
from protocol.messages import ChatJob, ChatMessage, Finished, SamplingParams

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


async def _messages(request: Request) -> Response:
    body = await decode_json(request, MessagesRequest)
    worker = request.app.state.registry.resolve(body.model)
    _reject_unsupported(body)
    job_messages = _system(body.system) + [_to_protocol(i, m) for i, m in enumerate(body.messages)]
    params = SamplingParams(
        max_tokens=body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,  # Anthropic's default
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_sequences or [],
        top_k=body.top_k or 0,  # 0: no top-k filter
    )
    stream = worker.submit(ChatJob(worker.new_job_id(), job_messages, params))
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
    reply = Message(
        id=_message_id(),
        model=model,
        content=[TextBlock(whole.text)],
        stop_reason=reason,
        stop_sequence=sequence,
        usage=Usage(finished.usage.prompt_tokens, finished.usage.completion_tokens),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _events(stream: JobStream, model: str) -> AsyncIterator[bytes]:
    """Anthropic's event sequence for one text block.

    The worker reports the prompt's token count only with ``Finished``, so
    ``message_start`` says 0 input tokens and ``message_delta`` carries the
    real count (a cumulative total the SDKs let overwrite the start's).
    """
    start = Message(_message_id(), model, [], None, None, Usage(0, 0))
    yield event(MessageStart(start))
    yield event(ContentBlockStart(0, TextBlock("")))
    yield event(Ping())
    try:
        async for piece in pieces(stream):
            if piece.text:
                yield event(ContentBlockDelta(0, TextDelta(piece.text)))
            if (finished := piece.finished) is not None:
                reason, sequence = stop_reason(finished)
                usage = finished.usage
                yield event(ContentBlockStop(0))
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


def stop_reason(finished: Finished) -> tuple[StopReason, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a finished job."""
    if finished.finish_reason == "length":
        return "max_tokens", None
    if finished.stop_sequence is not None:
        return "stop_sequence", finished.stop_sequence
    return "end_turn", None


def _reject_unsupported(body: MessagesRequest) -> None:
    """400 naming the first field this server cannot honour yet.

    Ignoring them would answer a different request than the one sent (no
    tool calls, no thinking, no structured output) without saying so.
    """
    if body.tools:  # an empty list asks for nothing
        _unsupported("tools", "tool use is not supported by this server yet")
    if body.tool_choice is not None:
        _unsupported("tool_choice", "tool use is not supported by this server yet")
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


def _to_protocol(index: int, message: MessageIn) -> ChatMessage:
    content = message.content
    if isinstance(content, list):
        texts = []
        for j, block in enumerate(content):
            if not isinstance(block, TextBlockIn):
                kind = block.__struct_config__.tag
                _unsupported(
                    f"messages[{index}].content[{j}]",
                    f"'{kind}' content blocks are not supported by this server yet; "
                    "only 'text' blocks are",
                )
            texts.append(block.text)
        # Joined as sent, nothing added between blocks (as chat.py joins text parts).
        content = "".join(texts)
    return ChatMessage(role=message.role, content=content)


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
