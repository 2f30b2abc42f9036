"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import decode_json
from gateway.errors import APIError
from gateway.generation import (
    now,
    reject_unsupported,
    response_id,
    sampling_params,
    usage_of,
    wants_usage_chunk,
)
from gateway.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    ChunkChoice,
    ChunkDelta,
    TextPart,
)
from gateway.streaming import (
    SSE_DONE,
    ClientGone,
    collect_while_connected,
    pieces,
    sse,
    sse_response,
)
from gateway.worker_client import JobStream
from protocol.messages import ChatJob, ChatMessage


async def chat_completions(request: Request) -> Response:
    body = await decode_json(request, ChatCompletionRequest)
    worker = request.app.state.registry.resolve(body.model)
    reject_unsupported(n=body.n != 1, logprobs=body.logprobs)
    params = sampling_params(body, max_tokens=body.max_completion_tokens or body.max_tokens)
    messages = [_to_protocol(i, m) for i, m in enumerate(body.messages)]
    stream = worker.submit(ChatJob(worker.new_job_id(), messages, params))
    model = worker.model.name
    if body.stream:
        return sse_response(_chunks(stream, model, wants_usage_chunk(body)))
    try:
        text, finished = await collect_while_connected(request, stream)
    except ClientGone:
        return Response(status_code=499)  # nobody is listening (nginx's "client closed")
    reply = ChatCompletion(
        id=response_id("chatcmpl"),
        created=now(),
        model=model,
        choices=[ChatChoice(0, AssistantMessage(text), finished.finish_reason)],
        usage=usage_of(finished),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _chunks(stream: JobStream, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    cid, created = response_id("chatcmpl"), now()

    def chunk(delta: ChunkDelta, finish_reason: str | None = None) -> bytes:
        choice = ChunkChoice(0, delta, finish_reason)
        return sse(ChatCompletionChunk(cid, created, model, [choice]))

    yield chunk(ChunkDelta(role="assistant", content=""))
    async for text, finished in pieces(stream):
        if text:
            yield chunk(ChunkDelta(content=text))
        if finished is not None:
            yield chunk(ChunkDelta(), finished.finish_reason)
            if include_usage:
                yield sse(ChatCompletionChunk(cid, created, model, [], usage=usage_of(finished)))
    yield SSE_DONE


def _to_protocol(index: int, message: ChatMessageIn) -> ChatMessage:
    content = message.content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, TextPart):
                raise APIError(
                    400,
                    "this model accepts text only; image parts need a vision model",
                    param=f"messages[{index}].content",
                )
            texts.append(part.text)
        content = "".join(texts)
    return ChatMessage(role=message.role, content=content, name=message.name)
