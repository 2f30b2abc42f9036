"""The Responses API's Response object and its items, as msgspec Structs:
what ``/v1/responses`` answers, stores (``responses_store``) and streams
(``responses_events``), shaped as the Open Responses specification has them.
The request's shapes are in ``responses_schemas``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from gateway.responses_schemas import JSONObjectTextFormat, TextTextFormat


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class OutputText(msgspec.Struct, tag="output_text"):
    text: str
    annotations: list[Any] = []
    logprobs: list[Logprob] = []


class ReasoningText(msgspec.Struct, tag="reasoning_text"):
    text: str


class SummaryText(msgspec.Struct, tag="summary_text"):
    text: str


class InputText(msgspec.Struct, tag="input_text"):
    text: str


class InputImage(msgspec.Struct, tag="input_image"):
    image_url: str | None
    detail: str = "auto"


class Refusal(msgspec.Struct, tag="refusal"):
    refusal: str


Content = OutputText | ReasoningText | SummaryText | InputText | InputImage | Refusal


class MessageItem(msgspec.Struct, tag="message"):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["user", "assistant", "system", "developer"]
    content: list[Content]


class FunctionCallItem(msgspec.Struct, tag="function_call", omit_defaults=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]
    # The namespace tool the function came from (OpenAI's field), if any.
    namespace: str | None = None


class FunctionCallOutputItem(msgspec.Struct, tag="function_call_output"):
    id: str
    call_id: str
    output: str | list[Content]
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class ReasoningItem(msgspec.Struct, tag="reasoning"):
    id: str
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


OutputItem = MessageItem | FunctionCallItem | ReasoningItem
# An input item as stored and listed (GET /v1/responses/{id}/input_items).
Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


class FunctionTool(msgspec.Struct, tag="function"):
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class FunctionToolChoice(msgspec.Struct, tag="function"):
    name: str


class AllowedToolsChoice(msgspec.Struct, tag="allowed_tools"):
    mode: Literal["auto", "required"]
    tools: list[FunctionToolChoice]


ToolChoice = Literal["none", "auto", "required"] | FunctionToolChoice | AllowedToolsChoice


class JSONSchemaFormatOut(msgspec.Struct, tag="json_schema"):
    name: str
    description: str | None
    schema: dict[str, Any] | None
    strict: bool


TextFormatOut = TextTextFormat | JSONObjectTextFormat | JSONSchemaFormatOut


class TextOut(msgspec.Struct):
    format: TextFormatOut
    verbosity: str = "medium"


class ReasoningOut(msgspec.Struct):
    effort: str | None
    summary: str | None


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens_details: OutputTokensDetails


class IncompleteDetails(msgspec.Struct):
    reason: str


class ResponseError(msgspec.Struct):
    code: str
    message: str


ResponseStatus = Literal["completed", "incomplete", "failed", "in_progress", "queued", "cancelled"]


class Response(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: ResponseStatus
    incomplete_details: IncompleteDetails | None = None
    error: ResponseError | None = None
    model: str
    previous_response_id: str | None
    instructions: str | None
    output: list[OutputItem] = []
    tools: list[FunctionTool]
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    max_tool_calls: int | None
    truncation: Literal["auto", "disabled"]
    text: TextOut
    reasoning: ReasoningOut | None
    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    top_logprobs: int
    max_output_tokens: int | None
    usage: ResponseUsage | None = None
    store: bool
    background: bool
    service_tier: str = "default"
    metadata: dict[str, str]
    prompt_cache_key: str | None
    safety_identifier: str | None
    user: str | None


class DeletedResponse(msgspec.Struct):
    id: str
    object: str = "response.deleted"
    deleted: bool = True


class ItemList(msgspec.Struct):
    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: str = "list"


class InputTokens(msgspec.Struct):
    input_tokens: int
    object: str = "response.input_tokens"
