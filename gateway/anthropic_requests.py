"""A Messages request as the :class:`~protocol.messages.ChatJob` a chat completion
would send: the same worker path, Anthropic's fields and 400s at the edge."""

from __future__ import annotations

from typing import NoReturn

import msgspec

from gateway.anthropic_schemas import (
    MessageIn,
    MessagesRequest,
    TextBlockIn,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlockIn,
    ToolUseBlockIn,
)
from gateway.errors import APIError
from gateway.generation import ToolSetup, tool_setup
from gateway.openai_schemas import (
    ChatCompletionRequest,
    FunctionDef,
    NamedFunction,
    NamedToolChoice,
    ToolDef,
)
from protocol.messages import ChatJob, ChatMessage, SamplingParams, ToolCall


def chat_job(job_id: str, body: MessagesRequest, *, count_only: bool = False) -> ChatJob:
    """The job for ``body``; a 400 naming the first field it cannot serve.
    ``count_only``: the job only counts the prompt's tokens."""
    _reject_unsupported(body)
    tools = _tool_setup(body)
    messages = _job_messages(body)
    if count_only:
        params = SamplingParams(max_tokens=1)
    else:
        params = SamplingParams(
            max_tokens=body.max_tokens,
            # Anthropic's defaults.
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            seed=body.seed,
            stop=body.stop_sequences or [],
            top_k=body.top_k or 0,  # 0: no top-k filter
            json_schema=tools.json_schema,  # a forced call's grammar
        )
    return ChatJob(job_id, messages, params, tools.tools, tools.mode, count_only=count_only)


def _job_messages(body: MessagesRequest) -> list[ChatMessage]:
    job_messages = _system(body.system)
    for i, m in enumerate(body.messages):
        job_messages.extend(_to_protocol(i, m))
    return job_messages


def _reject_unsupported(body: MessagesRequest) -> None:
    """400 naming the first field this server cannot honour yet.

    Ignoring them would answer a different request than the one sent (no
    thinking, no structured output) without saying so.
    """
    for i, tool in enumerate(body.tools or ()):
        if tool.type not in (None, "custom"):
            _unsupported(
                f"tools[{i}].type",
                f"server tools ({tool.type!r}) are not supported by this server; "
                "only client tools (an 'input_schema') are",
            )
        if tool.input_schema is None:
            _unsupported(f"tools[{i}].input_schema", "a tool needs an 'input_schema'")
    disabled = isinstance(body.thinking, dict) and body.thinking.get("type") == "disabled"
    if body.thinking is not None and not disabled:
        _unsupported("thinking", "extended thinking is not supported by this server yet")
    if body.output_config is not None and body.output_config.format is not None:
        _unsupported(
            "output_config.format", "structured outputs are not supported by this server yet"
        )
    last = len(body.messages) - 1
    if body.messages[last].role == "assistant":
        # Anthropic continues a final assistant message ("prefill"); the worker
        # always opens a new assistant turn, so it would answer something else.
        _unsupported(
            f"messages[{last}].role",
            "a final assistant message (prefill) is not supported by this server yet",
        )


def _unsupported(param: str, message: str) -> NoReturn:
    raise APIError(400, message, param=param)


def _system(system: str | list[TextBlockIn] | None) -> list[ChatMessage]:
    if isinstance(system, list):
        system = "".join(block.text for block in system)
    return [ChatMessage(role="system", content=system)] if system else []


def _tool_setup(body: MessagesRequest) -> ToolSetup:
    """``tools``/``tool_choice`` checked and decided exactly as for a chat
    completion (generation.tool_setup), with 400s naming Anthropic's fields."""
    choice: str | NamedToolChoice | None
    match body.tool_choice:
        case None:
            choice = None
        case ToolChoiceAny():
            choice = "required"
        case ToolChoiceTool(name=name):
            choice = NamedToolChoice("function", NamedFunction(name))
        case ToolChoiceNone():
            choice = "none"
        case _:
            choice = "auto"
    tools = [
        ToolDef("function", FunctionDef(t.name, t.description, t.input_schema or {}))
        for t in body.tools or ()
    ]
    as_chat = ChatCompletionRequest(body.model, [], tools=tools or None, tool_choice=choice)
    try:
        return tool_setup(as_chat)
    except APIError as exc:
        rename = {".function.parameters": ".input_schema", ".function.name": ".name"}
        message, param = exc.message, exc.param
        for old, new in rename.items():
            message = message.replace(old, new)
            param = param.replace(old, new) if param is not None else None
        message = message.replace("a function's parameters", "a tool's input_schema")
        raise APIError(exc.status, message, param=param) from None


def _to_protocol(index: int, message: MessageIn) -> list[ChatMessage]:
    """One message as the job's messages: an assistant turn with its tool_use
    blocks as ``tool_calls``; a user turn's tool_result blocks as "tool"
    messages (in the order given), then its text, if any, as a user message."""
    content = message.content
    if isinstance(content, str):
        return [ChatMessage(role=message.role, content=content)]
    texts: list[str] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(content):
        where = f"messages[{index}].content[{j}]"
        if isinstance(block, TextBlockIn):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlockIn) and message.role == "assistant":
            arguments = msgspec.json.encode(block.input).decode()
            calls.append(ToolCall(block.id, block.name, arguments))
        elif isinstance(block, ToolResultBlockIn) and message.role == "user":
            result = _result_text(block, where)
            results.append(ChatMessage(role="tool", content=result, tool_call_id=block.tool_use_id))
        elif isinstance(block, ToolUseBlockIn | ToolResultBlockIn):
            kind = block.__struct_config__.tag
            other = "assistant" if message.role == "user" else "user"
            _unsupported(where, f"'{kind}' blocks belong in {other} messages")
        else:
            kind = block.__struct_config__.tag
            _unsupported(
                where,
                f"'{kind}' content blocks are not supported by this server yet; "
                "only 'text', 'tool_use' and 'tool_result' blocks are",
            )
    # Joined as sent, nothing added between blocks (as chat.py joins text parts).
    text = "".join(texts)
    if message.role == "assistant":
        return [ChatMessage(role="assistant", content=text, tool_calls=calls or None)]
    if results and not text:
        return results  # only results: no empty user turn after them
    return [*results, ChatMessage(role="user", content=text)]


def _result_text(block: ToolResultBlockIn, where: str) -> str:
    content = block.content
    if isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            if not isinstance(part, TextBlockIn):
                kind = part.__struct_config__.tag
                _unsupported(
                    f"{where}.content[{k}]",
                    f"'{kind}' blocks in a tool result are not supported by this server yet",
                )
            parts.append(part.text)
        content = "".join(parts)
    text = content or ""
    return f"Error: {text}" if block.is_error else text
