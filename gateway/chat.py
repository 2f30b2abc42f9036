"""POST /v1/chat/completions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import decode_json
from gateway.chat_images import load_image
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_jobs
from gateway.errors import APIError
from gateway.generation import (
    choice_params,
    now,
    response_id,
    sampling_params,
    tool_setup,
    usage_of,
    wants_usage_chunk,
)
from gateway.job_stream import JobStream
from gateway.openai_schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    FunctionCall,
    FunctionChunk,
    ImagePart,
    TextPart,
    TokenLogprobOut,
    ToolCallChunk,
    ToolCallOut,
    TopLogprobOut,
)
from gateway.phase4 import Correlation, adopt_metadata
from gateway.registry import TEXT_FAMILIES
from gateway.sse import DONE, sse_event, sse_response
from gateway.text_pieces import collect, merged_pieces
from protocol.messages import ChatJob, ChatMessage, Job, TokenLogprob, ToolCall


async def chat_completions(request: Request) -> Response:
    body = await decode_json(request, ChatCompletionRequest)
    ids = adopt_metadata(request, body.metadata)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    if body.top_logprobs and not body.logprobs:
        raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    params = sampling_params(
        body,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    tools = tool_setup(body)
    if tools.json_schema is not None:
        params = msgspec.structs.replace(params, json_schema=tools.json_schema)
    vision = worker.model.family == "vlm"
    messages = [_to_protocol(i, m, vision) for i, m in enumerate(body.messages)]
    if vision:
        settings = request.app.state.config.gateway
        for i, original in enumerate(body.messages):
            if isinstance(original.content, list):
                messages[i].images = [
                    await load_image(
                        part.image_url.url, param=f"messages[{i}].content[{j}]", settings=settings
                    )
                    for j, part in enumerate(original.content)
                    if isinstance(part, ImagePart)
                ]
    jobs: list[Job] = [
        ChatJob(worker.new_job_id(), messages, p, tools.tools, tools.mode)
        for p in choice_params(params, body.n)
    ]
    streams = await submit_jobs(request, worker, jobs)
    model = worker.model.name
    if body.stream:
        return sse_response(_chunks(streams, model, wants_usage_chunk(body), ids))
    reply = _reply(streams, model, bool(body.logprobs), ids)
    return await respond_while_connected(request, reply)


async def _reply(
    streams: list[JobStream], model: str, logprobs: bool, ids: Correlation
) -> Response:
    outputs = await collect(streams)
    choices = []
    for index, out in enumerate(outputs):
        assert out.finished is not None
        calls = [_call_out(c) for c in out.tool_calls] or None
        content = out.text if not calls or out.text.strip() else None
        message = AssistantMessage(
            content, reasoning_content=out.reasoning or None, tool_calls=calls
        )
        choice_logprobs = _logprobs(out.logprobs) if logprobs else None
        choices.append(ChatChoice(index, message, out.finished.finish_reason, choice_logprobs))
    reply = ChatCompletion(
        id=response_id("chatcmpl"),
        created=now(),
        model=model,
        choices=choices,
        usage=usage_of([out.finished for out in outputs if out.finished]),
        htdi=ids.htdi(),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _chunks(
    streams: list[JobStream], model: str, include_usage: bool, ids: Correlation
) -> AsyncIterator[bytes]:
    cid, created = response_id("chatcmpl"), now()

    def chunk(choice: ChunkChoice, *, last: bool = False) -> bytes:
        htdi = ids.htdi() if last else msgspec.UNSET
        return sse_event(ChatCompletionChunk(cid, created, model, [choice], htdi=htdi))

    for index in range(len(streams)):
        yield chunk(ChunkChoice(index, ChunkDelta(role="assistant", content="")))
    finished = []
    calls_sent: dict[int, dict[str, int]] = {}  # choice -> its calls' ids -> index
    async for index, piece in merged_pieces(streams):
        if piece.reasoning:
            yield chunk(ChunkChoice(index, ChunkDelta(reasoning_content=piece.reasoning)))
        if piece.text or piece.logprobs:
            logprobs = _logprobs(piece.logprobs) if piece.logprobs is not None else None
            yield chunk(ChunkChoice(index, ChunkDelta(content=piece.text), None, logprobs))
        for call in piece.tool_calls:
            # OpenAI's fragments: the call's head, then pieces of its argument
            # text (a call piece with a known id carries more of them).
            known = calls_sent.setdefault(index, {})
            at = known.get(call.id)
            if at is None:
                at = known[call.id] = len(known)
                head = ToolCallChunk(at, FunctionChunk(call.name, ""), call.id, "function")
                yield chunk(ChunkChoice(index, ChunkDelta(tool_calls=[head])))
            if call.arguments:
                args = ToolCallChunk(at, FunctionChunk(arguments=call.arguments))
                yield chunk(ChunkChoice(index, ChunkDelta(tool_calls=[args])))
        if piece.finished is not None:
            finished.append(piece.finished)
            # The stream's final chunk carries htdi: the usage chunk, if one follows.
            last = len(finished) == len(streams) and not include_usage
            choice = ChunkChoice(index, ChunkDelta(), piece.finished.finish_reason)
            yield chunk(choice, last=last)
    if include_usage:
        usage = usage_of(finished)
        yield sse_event(ChatCompletionChunk(cid, created, model, [], usage=usage, htdi=ids.htdi()))
    yield DONE


def _logprobs(tokens: list[TokenLogprob] | None) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        [
            TokenLogprobOut(
                t.token,
                t.logprob,
                t.bytes,
                [TopLogprobOut(a.token, a.logprob, a.bytes) for a in t.top],
            )
            for t in tokens or ()
        ]
    )


def _to_protocol(index: int, message: ChatMessageIn, vision: bool) -> ChatMessage:
    """The message for the worker; its image parts are loaded by the caller
    (for a vision model; any other model answers them with a 400)."""
    content = message.content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif not vision:
                raise APIError(
                    400,
                    "this model accepts text only; image parts need a vision model",
                    param=f"messages[{index}].content[{j}]",
                )
            elif message.role != "user":
                raise APIError(
                    400,
                    "only user messages may have images",
                    param=f"messages[{index}].content[{j}]",
                )
        content = "".join(texts)
    calls = None
    if message.tool_calls:
        if message.role != "assistant":
            raise APIError(
                400,
                "only assistant messages have 'tool_calls'",
                param=f"messages[{index}].tool_calls",
            )
        calls = []
        for j, call in enumerate(message.tool_calls):
            try:
                arguments = json.loads(call.function.arguments)
            except (ValueError, RecursionError):  # a deep one: the json module recurses
                arguments = None
            if not isinstance(arguments, dict):
                raise APIError(
                    400,
                    "a tool call's arguments must be a JSON object (as text)",
                    param=f"messages[{index}].tool_calls[{j}].function.arguments",
                )
            calls.append(ToolCall(call.id, call.function.name, call.function.arguments))
    if message.role == "tool" and not message.tool_call_id:
        raise APIError(
            400, "a 'tool' message needs 'tool_call_id'", param=f"messages[{index}].tool_call_id"
        )
    return ChatMessage(
        role=message.role,
        content=content,
        name=message.name,
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
    )


def _call_out(call: ToolCall) -> ToolCallOut:
    return ToolCallOut(call.id, FunctionCall(call.name, call.arguments))
