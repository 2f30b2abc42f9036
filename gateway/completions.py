"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import decode_json
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_jobs
from gateway.errors import APIError
from gateway.generation import (
    choice_params,
    now,
    reject_unsupported,
    response_id,
    sampling_params,
    usage_of,
    wants_usage_chunk,
)
from gateway.job_stream import JobStream
from gateway.openai_schemas import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    PromptTokensDetails,
    Usage,
)
from gateway.phase4 import Correlation, adopt_metadata
from gateway.registry import TEXT_FAMILIES
from gateway.sse import DONE, sse_event, sse_response
from gateway.text_pieces import collect, merged_pieces
from protocol.messages import CompletionJob, Finished, Job, TokenLogprob


async def completions(request: Request) -> Response:
    body = await decode_json(request, CompletionRequest)
    ids = adopt_metadata(request, body.metadata)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    reject_unsupported(
        suffix=body.suffix,
        best_of=body.best_of not in (None, 1, body.n),
        # The prompt's own logprobs need a scoring pass the batch does not do.
        echo=body.echo and body.logprobs is not None,
    )
    params = sampling_params(
        body,
        max_tokens=body.max_tokens,
        logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs or 0,
        echo=body.echo,
    )
    # A batch of prompts gives n choices per prompt, prompt i's at i * n + j.
    jobs: list[Job] = [
        CompletionJob(worker.new_job_id(), prompt, p)
        for prompt in _prompts(body.prompt)
        for p in choice_params(params, body.n)
    ]
    streams = await submit_jobs(request, worker, jobs)
    model = worker.model.name
    if body.stream:
        return sse_response(_chunks(streams, model, wants_usage_chunk(body), body.n, ids))
    return await respond_while_connected(request, _reply(streams, model, body.n, ids))


async def _reply(streams: list[JobStream], model: str, n: int, ids: Correlation) -> Response:
    outputs = await collect(streams)
    choices = []
    for index, out in enumerate(outputs):
        assert out.finished is not None
        logprobs = _logprobs(out.logprobs, 0) if out.logprobs is not None else None
        choices.append(CompletionChoice(index, out.text, out.finished.finish_reason, logprobs))
    reply = Completion(
        id=response_id("cmpl"),
        created=now(),
        model=model,
        choices=choices,
        usage=_batch_usage([out.finished for out in outputs if out.finished], n),
        htdi=ids.htdi(),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _chunks(
    streams: list[JobStream], model: str, include_usage: bool, n: int, ids: Correlation
) -> AsyncIterator[bytes]:
    cid, created = response_id("cmpl"), now()
    finished: dict[int, Finished] = {}
    offsets = [0] * len(streams)
    async for index, piece in merged_pieces(streams):
        reason = piece.finished.finish_reason if piece.finished is not None else None
        if piece.finished is not None:
            finished[index] = piece.finished
        if piece.text or reason:
            logprobs = None
            if piece.logprobs is not None:
                logprobs = _logprobs(piece.logprobs, offsets[index])
            offsets[index] += len(piece.text)
            choice = CompletionChoice(index, piece.text, reason, logprobs)
            # The stream's final chunk carries htdi: the usage chunk, if one follows.
            last = len(finished) == len(streams) and not include_usage
            htdi = ids.htdi() if last else msgspec.UNSET
            yield sse_event(Completion(cid, created, model, [choice], htdi=htdi))
    if include_usage:
        ordered = [finished[i] for i in sorted(finished)]
        usage = _batch_usage(ordered, n)
        yield sse_event(Completion(cid, created, model, [], usage=usage, htdi=ids.htdi()))
    yield DONE


def _logprobs(tokens: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    text_offset = []
    for t in tokens:
        text_offset.append(offset)
        offset += len(t.token)
    return CompletionLogprobs(
        tokens=[t.token for t in tokens],
        token_logprobs=[t.logprob for t in tokens],
        top_logprobs=[{a.token: a.logprob for a in t.top} for t in tokens],
        text_offset=text_offset,
    )


def _batch_usage(finished: list[Finished], n: int) -> Usage:
    """Usage of a batch of prompts, ``n`` choices each: each prompt counts once."""
    groups = [usage_of(finished[i : i + n]) for i in range(0, len(finished), n)]
    prompt = sum(u.prompt_tokens for u in groups)
    completion = sum(u.completion_tokens for u in groups)
    cached = sum(u.prompt_tokens_details.cached_tokens for u in groups if u.prompt_tokens_details)
    return Usage(prompt, completion, prompt + completion, PromptTokensDetails(cached))


def _prompts(prompt: str | list[Any]) -> list[str | list[int]]:
    """The request's prompts: a string, token ids, or a batch of either."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(_is_token(t) for t in prompt):
        return [prompt]
    if prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if prompt and all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
        return list(prompt)
    raise APIError(
        400,
        "'prompt' must be a string, a list of token ids, or a non-empty list of either",
        param="prompt",
    )


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
