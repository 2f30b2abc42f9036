"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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
from gateway.schemas import Completion, CompletionChoice, CompletionRequest
from gateway.streaming import (
    SSE_DONE,
    ClientGone,
    collect_while_connected,
    pieces,
    sse,
    sse_response,
)
from gateway.worker_client import JobStream
from protocol.messages import CompletionJob


async def completions(request: Request) -> Response:
    body = await decode_json(request, CompletionRequest)
    worker = request.app.state.registry.resolve(body.model)
    reject_unsupported(
        n=body.n != 1, echo=body.echo, logprobs=body.logprobs is not None, suffix=body.suffix
    )
    params = sampling_params(body, max_tokens=body.max_tokens)
    stream = worker.submit(CompletionJob(worker.new_job_id(), _single_prompt(body.prompt), params))
    model = worker.model.name
    if body.stream:
        return sse_response(_chunks(stream, model, wants_usage_chunk(body)))
    try:
        text, finished = await collect_while_connected(request, stream)
    except ClientGone:
        return Response(status_code=499)  # nobody is listening (nginx's "client closed")
    reply = Completion(
        id=response_id("cmpl"),
        created=now(),
        model=model,
        choices=[CompletionChoice(0, text, finished.finish_reason)],
        usage=usage_of(finished),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _chunks(stream: JobStream, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    cid, created = response_id("cmpl"), now()
    async for text, finished in pieces(stream):
        reason = finished.finish_reason if finished is not None else None
        if text or reason:
            yield sse(Completion(cid, created, model, [CompletionChoice(0, text, reason)]))
        if finished is not None and include_usage:
            yield sse(Completion(cid, created, model, [], usage=usage_of(finished)))
    yield SSE_DONE


def _single_prompt(prompt: str | list[Any]) -> str | list[int]:
    """One prompt as text or token ids; a batch of several is not supported yet."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if len(prompt) == 1 and isinstance(prompt[0], list):
        prompt = prompt[0]
    if prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    raise APIError(
        400,
        "'prompt' must be one string or one list of token ids (batches are not supported yet)",
        param="prompt",
    )
