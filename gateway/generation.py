"""What chat and text completions share: request -> job parameters, ids, usage."""

from __future__ import annotations

import time
import uuid

import msgspec

from gateway.errors import APIError
from gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    JSONObjectFormat,
    JSONSchemaResponseFormat,
    PromptTokensDetails,
    ResponseFormat,
    Usage,
)
from protocol.messages import Finished, SamplingParams


def sampling_params(
    body: ChatCompletionRequest | CompletionRequest,
    *,
    max_tokens: int | None,
    logprobs: bool,
    top_logprobs: int,
    echo: bool = False,
) -> SamplingParams:
    # OpenAI's defaults: temperature 1, top_p 1.
    stop = body.stop
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        logit_bias=_logit_bias(body.logit_bias),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        echo=echo,
        json_schema=_json_schema(body.response_format),
    )


def choice_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """One job per choice; with a seed, choice i samples with seed + i, so the
    ``n`` choices differ yet the whole answer reproduces."""
    if params.seed is None:
        return [params] * n
    return [msgspec.structs.replace(params, seed=params.seed + i) for i in range(n)]


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    try:
        return {int(token): value for token, value in (bias or {}).items()}
    except ValueError:
        raise APIError(
            400, "'logit_bias' keys must be token ids (integers as strings)", param="logit_bias"
        ) from None


def _json_schema(response_format: ResponseFormat | None) -> str | None:
    """The JSON schema the output must follow, checked here so a bad one is a
    400 before a stream starts (the worker checks it again against its
    tokenizer). ``{"type": "text"}`` asks for nothing."""
    if isinstance(response_format, JSONObjectFormat):
        return '{"type": "object"}'
    if not isinstance(response_format, JSONSchemaResponseFormat):
        return None
    schema = response_format.json_schema.schema
    text = msgspec.json.encode(schema if schema is not None else {}).decode()
    from llguidance import LLMatcher  # only requests with a schema pay for the import

    try:
        grammar = LLMatcher.grammar_from_json_schema(text)
        is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    except ValueError as exc:
        is_error, messages = True, [str(exc)]
    if is_error:
        raise APIError(
            400,
            f"'response_format': invalid JSON schema: {'; '.join(messages)}",
            param="response_format",
        )
    return text


def wants_usage_chunk(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def reject_unsupported(**fields: object) -> None:
    """400 naming the first field set to a value this server does not support yet."""
    for name, unsupported in fields.items():
        if unsupported:
            raise APIError(400, f"'{name}' is not supported by this server yet", param=name)


def usage_of(finished: list[Finished]) -> Usage:
    """One request's usage over its choices: the prompt counts once (OpenAI's rule)."""
    prompt = finished[0].usage.prompt_tokens if finished else 0
    cached = finished[0].usage.cached_tokens if finished else 0
    completion = sum(f.usage.completion_tokens for f in finished)
    return Usage(prompt, completion, prompt + completion, PromptTokensDetails(cached))


def response_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
