"""OpenAI request and response shapes, as msgspec Structs.

Requests are decoded and validated in one pass; a bad field becomes a 400
naming it. Responses are encoded straight from Structs (the hot path of a
stream is one chunk encode per batch of tokens).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.phase4 import Htdi

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]
MaxTokens = Annotated[int, Meta(ge=1)]
Stop = str | Annotated[list[str], Meta(max_length=4)] | None
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
# Token id (as a string, JSON keys are strings) -> bias added to its logit.
LogitBias = dict[str, Annotated[float, Meta(ge=-100.0, le=100.0)]]
Choices = Annotated[int, Meta(ge=1, le=64)]
# OpenAI's metadata object; the Phase-4 contract reads requestId and houseId from it.
Metadata = dict[str, Any]
# Extensions beyond OpenAI's fields (mlx-lm samplers): top_k, min_p, repetition_penalty.
TopK = Annotated[int, Meta(ge=0)]
MinP = Annotated[float, Meta(ge=0.0, le=1.0)]
RepetitionPenalty = Annotated[float, Meta(gt=0.0)]


class TextPart(msgspec.Struct, tag="text"):
    text: str


class ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class ImagePart(msgspec.Struct, tag="image_url"):
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class FunctionCall(msgspec.Struct):
    name: str
    # JSON text of an object, as the model wrote it (OpenAI's shape).
    arguments: str


class ToolCallIn(msgspec.Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ChatMessageIn(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    # An assistant turn's calls; a tool result's call id.
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDef(msgspec.Struct, omit_defaults=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    description: str | None = None
    # The arguments' JSON schema; absent: no arguments ({"type": "object"}).
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(msgspec.Struct):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class JSONSchemaFormat(msgspec.Struct):
    name: Annotated[str, Meta(max_length=64)]
    # The JSON schema the output must validate against; absent: any JSON.
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextFormat(msgspec.Struct, tag="text", tag_field="type"):
    pass


class JSONObjectFormat(msgspec.Struct, tag="json_object", tag_field="type"):
    pass


class JSONSchemaResponseFormat(msgspec.Struct, tag="json_schema", tag_field="type"):
    json_schema: JSONSchemaFormat


ResponseFormat = TextFormat | JSONObjectFormat | JSONSchemaResponseFormat


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: Annotated[list[ChatMessageIn], Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: Stop = None
    n: Choices = 1
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    user: str | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    # "none" | "auto" | "required" | {"type": "function", "function": {"name"}}
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    metadata: Metadata | None = None


class CompletionRequest(msgspec.Struct):
    model: str
    # str | list[str] | list[int] | list[list[int]]; msgspec unions allow one
    # list type, so the items are checked in completions.py.
    prompt: str | list[Any]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = 16  # OpenAI's default for completions
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: Stop = None
    n: Choices = 1
    echo: bool = False
    logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    best_of: int | None = None
    suffix: str | None = None
    user: str | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repetition_penalty: RepetitionPenalty | None = None
    response_format: ResponseFormat | None = None
    metadata: Metadata | None = None


# --- responses ----------------------------------------------------------------


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ToolCallOut(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class AssistantMessage(msgspec.Struct):
    content: str | None
    role: str = "assistant"
    refusal: None = None
    # The model's reasoning (<think>...</think>), apart from the answer; the
    # field name reasoning models' OpenAI-compatible servers use.
    reasoning_content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class TopLogprobOut(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobOut]


class ChoiceLogprobs(msgspec.Struct):
    content: list[TokenLogprobOut] | None
    refusal: None = None


class ChatChoice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    htdi: Htdi | UnsetType = UNSET


class FunctionChunk(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallChunk(msgspec.Struct, omit_defaults=True):
    """A streamed call: its first chunk has id, type and name (arguments "");
    later ones add argument text to the call at ``index``."""

    index: int
    function: FunctionChunk
    id: str | None = None
    type: str | None = None


class ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    # Only on the stream's final chunk.
    htdi: Htdi | UnsetType = UNSET


class CompletionLogprobs(msgspec.Struct):
    """The legacy completions shape: parallel lists."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(msgspec.Struct):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: str = "text_completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    # Unstreamed, and on a stream's final chunk.
    htdi: Htdi | UnsetType = UNSET


class Quantization(msgspec.Struct):
    """From the model folder's config.json (``quantization``/``quantization_config``)."""

    bits: int
    group_size: int | None = None


class ModelCard(msgspec.Struct):
    id: str
    created: int
    owned_by: str
    family: str
    state: str
    aliases: list[str]
    description: str
    demo: bool
    object: str = "model"
    # The Phase-4 registry's metadata: where the weights are (the config's
    # path), how they are quantized, the context length, what it can do
    # ("chat", "completions", "tools", "vision", "embeddings", ...), and the
    # longest prompt it takes (null: the context length is the limit).
    path: str = ""
    quantization: Quantization | None = None
    context_length: int | None = None
    capabilities: list[str] = []
    max_prompt_tokens: int | None = None


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"
