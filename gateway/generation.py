"""What chat and text completions share: request -> job parameters, ids, usage."""

from __future__ import annotations

import time
import uuid

from gateway.errors import APIError
from gateway.schemas import ChatCompletionRequest, CompletionRequest, Usage
from protocol.messages import Finished, SamplingParams


def sampling_params(
    body: ChatCompletionRequest | CompletionRequest, max_tokens: int | None
) -> SamplingParams:
    # OpenAI's defaults: temperature 1, top_p 1.
    stop = body.stop
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=[stop] if isinstance(stop, str) else list(stop or []),
    )


def wants_usage_chunk(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return body.stream_options is not None and body.stream_options.include_usage


def reject_unsupported(**fields: object) -> None:
    """400 naming the first field set to a value this server does not support yet."""
    for name, unsupported in fields.items():
        if unsupported:
            raise APIError(400, f"'{name}' is not supported by this server yet", param=name)


def usage_of(finished: Finished) -> Usage:
    u = finished.usage
    return Usage(u.prompt_tokens, u.completion_tokens, u.prompt_tokens + u.completion_tokens)


def response_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
