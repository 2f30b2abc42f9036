"""The Responses API's request shapes (``/v1/responses``), as msgspec Structs.

Shapes follow the Open Responses specification (and OpenAI's API reference,
which it mirrors): a request, its input items and tools. The Response object
with its output items is in ``responses_objects``; streaming events are in
``responses_events``.

Request input items and tools are decoded as plain objects first and then
one by one (``responses_input``), so an error names the item
(``input[3].content[0]``) and an unknown item or tool type gets its own
message instead of msgspec's "invalid tag". Unknown top-level fields
(``client_metadata``...) are ignored, as everywhere in this gateway.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.openai_schemas import MinP, Penalty, RepetitionPenalty, Temperature, TopK, TopP

MaxOutputTokens = Annotated[int, Meta(ge=1)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
Identifier = Annotated[str, Meta(max_length=64)]


# --- request --------------------------------------------------------------------


class JSONSchemaTextFormat(msgspec.Struct, tag="json_schema"):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextTextFormat(msgspec.Struct, tag="text"):
    pass


class JSONObjectTextFormat(msgspec.Struct, tag="json_object"):
    pass


TextFormat = TextTextFormat | JSONObjectTextFormat | JSONSchemaTextFormat


class TextConfig(msgspec.Struct):
    format: TextFormat | None = None
    # A hint to the model; echoed, not applied (a local model has no such knob).
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(msgspec.Struct):
    # Echoed, not applied: a model with think markers always reasons its own way.
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(msgspec.Struct):
    include_obfuscation: bool | None = None


class ResponseRequest(msgspec.Struct, kw_only=True):
    model: str
    # A string (one user message) or a list of items, checked by responses_input.
    input: str | list[Any] | None = None
    instructions: str | None = None
    max_output_tokens: MaxOutputTokens | None = None
    max_tool_calls: Annotated[int, Meta(ge=1)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: TopLogprobs | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: Identifier | None = None
    user: str | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    service_tier: str | None = None  # echoed as "default": one tier here
    # Extensions, as on chat completions (mlx-lm's samplers, a seed).
    seed: int | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    # OpenAI fields this server cannot honour: a 400 naming them when set.
    prompt: Any = None
    conversation: Any = None
    context_management: Any = None


class InputTokensRequest(msgspec.Struct, kw_only=True):
    """POST /v1/responses/input_tokens: what decides a prompt, nothing more."""

    model: str
    input: str | list[Any] | None = None
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    previous_response_id: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: Any = None


# --- request items (decoded one by one) ------------------------------------------


class InputTextIn(msgspec.Struct, tag="input_text"):
    text: str


class InputImageIn(msgspec.Struct, tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None


class InputFileIn(msgspec.Struct, tag="input_file"):
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputTextIn(msgspec.Struct, tag="output_text"):
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class RefusalIn(msgspec.Struct, tag="refusal"):
    refusal: str


PartIn = InputTextIn | InputImageIn | InputFileIn | OutputTextIn | RefusalIn


class MessageIn(msgspec.Struct, kw_only=True):
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[PartIn]
    type: Literal["message"] = "message"
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class FunctionCallIn(msgspec.Struct, kw_only=True):
    call_id: Annotated[str, Meta(min_length=1)]
    name: Annotated[str, Meta(min_length=1)]
    arguments: str
    namespace: str | None = None
    id: str | None = None
    status: str | None = None


class FunctionCallOutputIn(msgspec.Struct, kw_only=True):
    call_id: Annotated[str, Meta(min_length=1)]
    output: str | list[PartIn]
    id: str | None = None
    status: str | None = None


class SummaryTextIn(msgspec.Struct, tag="summary_text"):
    text: str


class ReasoningTextIn(msgspec.Struct, tag="reasoning_text"):
    text: str


class ReasoningIn(msgspec.Struct, kw_only=True):
    summary: list[SummaryTextIn] = []
    content: list[ReasoningTextIn] | None = None
    encrypted_content: str | None = None
    id: str | None = None
    status: str | None = None


class ItemReferenceIn(msgspec.Struct):
    id: str


class FunctionToolIn(msgspec.Struct, kw_only=True):
    # As chat's function names (OpenAI's pattern, plus '.' and ':' some clients use).
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamespaceToolIn(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    tools: list[Any] = []
