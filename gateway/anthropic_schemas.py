"""Anthropic Messages API shapes, as msgspec Structs.

Kept apart from the OpenAI shapes in ``openai_schemas.py``: the two APIs name the
same ideas differently (``max_tokens`` is required here, ``stop_sequences``,
content blocks, ``stop_reason``), and sharing Structs would blur both.

Requests are decoded and validated in one pass (a bad field is a 400 naming
it). Block types this server cannot serve yet are still decoded, so the
handler can reject them by name instead of with msgspec's "invalid tag".
Unknown fields (``cache_control`` on a block, ``service_tier``...) are
ignored, as msgspec does by default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Temperature = Annotated[float, Meta(ge=0.0, le=1.0)]  # Anthropic's range, not OpenAI's 0..2
TopP = Annotated[float, Meta(gt=0.0, le=1.0)]  # 0 would keep no token at all
MaxTokens = Annotated[int, Meta(ge=1)]
TopK = Annotated[int, Meta(ge=0)]  # 0 (or null): no top-k filter


# --- request content blocks ----------------------------------------------------


class TextBlockIn(msgspec.Struct, tag="text"):
    text: str


class ImageBlockIn(msgspec.Struct, tag="image"):
    source: Any = None


class DocumentBlockIn(msgspec.Struct, tag="document"):
    source: Any = None


class ToolUseBlockIn(msgspec.Struct, tag="tool_use"):
    """A call the assistant made in an earlier turn."""

    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlockIn(msgspec.Struct, tag="tool_result"):
    """A call's result, in the user turn after it: text, or text blocks."""

    tool_use_id: str
    content: str | list[TextBlockIn | ImageBlockIn | DocumentBlockIn] | None = None
    is_error: bool = False


ContentBlockIn = TextBlockIn | ImageBlockIn | DocumentBlockIn | ToolUseBlockIn | ToolResultBlockIn


class ToolIn(msgspec.Struct):
    """A client tool; ``type`` is absent or "custom" (server tools have others)."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    input_schema: dict[str, Any] | None = None  # required, but checked by the handler
    description: str | None = None
    type: str | None = None


class ToolChoiceAuto(msgspec.Struct, tag="auto"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(msgspec.Struct, tag="any"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(msgspec.Struct, tag="tool"):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(msgspec.Struct, tag="none"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class MessageIn(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlockIn]


class OutputConfig(msgspec.Struct):
    format: Any = None  # structured outputs (a JSON schema the text must follow)
    effort: Any = None  # a hint for reasoning models: nothing to adjust here


class MessagesRequest(msgspec.Struct):
    model: str
    max_tokens: MaxTokens  # required by Anthropic's API: no default on purpose
    messages: Annotated[list[MessageIn], Meta(min_length=1)]
    system: str | list[TextBlockIn] | None = None
    stop_sequences: list[str] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    stream: bool = False
    metadata: Any = None  # user_id for abuse tracking: nothing to do with it here
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Any = None
    output_config: OutputConfig | None = None
    seed: int | None = None  # an extension (as top_k is for OpenAI): reproducible sampling


class CountTokensRequest(msgspec.Struct):
    """POST /v1/messages/count_tokens: a Messages request without sampling."""

    model: str
    messages: Annotated[list[MessageIn], Meta(min_length=1)]
    system: str | list[TextBlockIn] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Any = None


class TokenCount(msgspec.Struct):
    input_tokens: int


# --- responses -----------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class TextBlock(msgspec.Struct, tag="text"):
    text: str


class ToolUseBlock(msgspec.Struct, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextBlock | ToolUseBlock


class Usage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class Message(msgspec.Struct, tag="message"):
    id: str
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage
    role: str = "assistant"


# --- streaming events (``event: <tag>`` + ``data: <json>``) ---------------------


class MessageStart(msgspec.Struct, tag="message_start"):
    message: Message


class ContentBlockStart(msgspec.Struct, tag="content_block_start"):
    index: int
    content_block: ContentBlock


class Ping(msgspec.Struct, tag="ping"):
    pass


class TextDelta(msgspec.Struct, tag="text_delta"):
    text: str


class InputJSONDelta(msgspec.Struct, tag="input_json_delta"):
    """More of a tool_use block's ``input``, as JSON text (a client joins the pieces)."""

    partial_json: str


class ContentBlockDelta(msgspec.Struct, tag="content_block_delta"):
    index: int
    delta: TextDelta | InputJSONDelta


class ContentBlockStop(msgspec.Struct, tag="content_block_stop"):
    index: int


class MessageDeltaBody(msgspec.Struct):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDeltaUsage(msgspec.Struct):
    output_tokens: int
    # Cumulative, and it overwrites message_start's: the worker reports the
    # prompt's length only when the job finishes (see anthropic.py).
    input_tokens: int


class MessageDelta(msgspec.Struct, tag="message_delta"):
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(msgspec.Struct, tag="message_stop"):
    pass


# --- errors: the HTTP body and the stream's error event are the same shape ------


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class ErrorResponse(msgspec.Struct, tag="error", omit_defaults=True):
    error: ErrorDetail
    request_id: str | None = None


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | Ping
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | ErrorResponse
)
