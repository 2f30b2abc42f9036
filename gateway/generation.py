"""What chat and text completions share: request -> job parameters, ids, usage."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.errors import APIError
from gateway.openai_schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    JSONObjectFormat,
    JSONSchemaResponseFormat,
    PromptTokensDetails,
    ResponseFormat,
    TextFormat,
    Usage,
)
from protocol.messages import Finished, SamplingParams, ToolMode


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
    check_json_schema(text, "response_format")
    return text


def check_json_schema(text: str, param: str) -> None:
    """400 naming ``param`` unless llguidance can compile the JSON schema ``text``."""
    from llguidance import LLMatcher  # only requests with a schema pay for the import

    try:
        grammar = LLMatcher.grammar_from_json_schema(text)
        is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    except ValueError as exc:
        is_error, messages = True, [str(exc)]
    if is_error:
        raise APIError(400, f"'{param}': invalid JSON schema: {'; '.join(messages)}", param=param)


@dataclass
class ToolSetup:
    """A chat request's tools as a job carries them."""

    tools: list[dict[str, Any]] | None = None
    mode: ToolMode = "auto"
    # "forced": the schema of the one call the output must be.
    json_schema: str | None = None


def tool_setup(body: ChatCompletionRequest) -> ToolSetup:
    """Check ``tools``/``tool_choice`` (400 naming the field) and decide how
    calls are made: parsed from the output ("auto"), not at all ("none"), or
    forced by a grammar ("required" or a named function)."""
    choice = body.tool_choice
    if not body.tools:
        if choice is None or choice in ("none", "auto"):
            return ToolSetup(mode="none")
        raise APIError(400, "'tool_choice' needs 'tools'", param="tool_choice")
    functions: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(body.tools):
        f = tool.function
        if f.name in functions:
            raise APIError(
                400, f"two tools are named {f.name!r}", param=f"tools[{i}].function.name"
            )
        parameters = f.parameters if f.parameters is not None else {"type": "object"}
        if parameters.get("type", "object") != "object":
            raise APIError(
                400,
                "a function's parameters must be a JSON schema of type 'object'",
                param=f"tools[{i}].function.parameters",
            )
        check_json_schema(
            msgspec.json.encode(parameters).decode(), f"tools[{i}].function.parameters"
        )
        functions[f.name] = parameters
    tools = [msgspec.to_builtins(t) for t in body.tools]
    if choice is None or choice == "auto":
        return ToolSetup(tools, "auto")
    if choice == "none":
        return ToolSetup(tools, "none")
    if isinstance(choice, str) and choice != "required":
        raise APIError(
            400,
            f"'tool_choice' must be 'none', 'auto', 'required' or a named function, not {choice!r}",
            param="tool_choice",
        )
    if body.response_format is not None and not isinstance(body.response_format, TextFormat):
        raise APIError(
            400,
            "'response_format' cannot be combined with a forced tool call",
            param="response_format",
        )
    if isinstance(choice, str):  # "required": any one of the functions
        names = list(functions)
    else:
        if choice.function.name not in functions:
            raise APIError(
                400,
                f"'tool_choice' names {choice.function.name!r}, which is not in 'tools'",
                param="tool_choice",
            )
        names = [choice.function.name]
    variants = [_call_schema(name, functions[name]) for name in names]
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    text = msgspec.json.encode(schema).decode()
    check_json_schema(text, "tools")
    return ToolSetup(tools, "forced", text)


def _call_schema(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


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
