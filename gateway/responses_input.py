"""Responses API input items: checked, stored in one canonical form, and
turned into the chat transcript a worker renders with the model's template.

Input arrives as a string or a list of items (messages with content parts,
``function_call``, ``function_call_output`` and ``reasoning`` items); each is
decoded on its own so an error names it (``input[2].content[0]``). Accepted
items become :data:`~gateway.responses_objects.Item` values with ids: the
form stored for ``previous_response_id`` chains and listed by
``GET /v1/responses/{id}/input_items``. A conversation of items then becomes
:class:`~protocol.messages.ChatMessage` turns: ``developer`` and ``system``
messages are system turns (``instructions`` and the leading ones merged into
the first), reasoning and the calls after it join the assistant turn they
belong to, and call outputs are ``tool`` messages.

Reasoning items the gateway returns carry their text in ``encrypted_content``
(not encrypted: encoded, see :func:`encode_reasoning`), so clients that store
nothing (Codex: ``store: false``) hand the reasoning back with the next turn.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from gateway.errors import APIError
from gateway.responses_objects import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputText,
    Item,
    MessageItem,
    OutputText,
    ReasoningItem,
    ReasoningText,
    Refusal,
)
from gateway.responses_schemas import (
    FunctionCallIn,
    FunctionCallOutputIn,
    InputFileIn,
    InputImageIn,
    InputTextIn,
    ItemReferenceIn,
    MessageIn,
    OutputTextIn,
    PartIn,
    ReasoningIn,
    RefusalIn,
)
from protocol.messages import ChatMessage, ToolCall

T = TypeVar("T")
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]*)`")
_REASONING_PREFIX = "mlxgw.v1."
# Item types OpenAI's server-side tools produce; this gateway runs none of them.
SERVER_ITEM_TYPES = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "image_generation_call",
        "computer_call",
        "computer_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "custom_tool_call",
        "custom_tool_call_output",
        "tool_search_call",
        "tool_search_output",
        "compaction",
    }
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def encode_reasoning(text: str) -> str:
    """A reasoning item's ``encrypted_content``: its text, versioned and base64-encoded.

    Opaque to clients and readable by any gateway, by design: the reasoning
    is the model's own text (also in the item's ``content``), so there is
    nothing to hide, only something to hand back unchanged."""
    return _REASONING_PREFIX + base64.b64encode(text.encode()).decode()


def decode_reasoning(value: str, param: str) -> str:
    body = value.removeprefix(_REASONING_PREFIX)
    try:
        if body == value:
            raise ValueError
        return base64.b64decode(body, validate=True).decode()
    except (ValueError, binascii.Error):
        raise APIError(
            400,
            "'encrypted_content' is not reasoning this gateway produced; send reasoning "
            "items back as they were returned (or leave them out)",
            param=param,
        ) from None


def convert(raw: Any, kind: type[T], param: str) -> T:
    """``raw`` as ``kind``; a 400 naming the field below ``param`` otherwise."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        match, missing = _PATH.search(str(exc)), _MISSING.search(str(exc))
        sub = match.group(1) if match else ""
        if missing:
            sub = f"{sub}.{missing.group(1)}" if sub else missing.group(1)
        where = param + (sub if sub.startswith("[") else f".{sub}" if sub else "")
        raise APIError(400, f"invalid '{where}': {exc}", param=where) from None


ItemResolver = Callable[[str], Item | None]


def input_items(
    raw: str | list[Any] | None, param: str = "input", resolve: ItemResolver | None = None
) -> list[Item]:
    """The request's ``input`` as canonical items (ids given to those without);
    ``item_reference`` items are the items ``resolve`` finds by id."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [MessageItem(new_id("msg"), "completed", "user", [InputText(raw)])]
    return [_item(entry, f"{param}[{i}]", resolve) for i, entry in enumerate(raw)]


def _item(raw: Any, param: str, resolve: ItemResolver | None) -> Item:
    if not isinstance(raw, dict):
        raise APIError(400, f"'{param}' must be an object (an input item)", param=param)
    kind = raw.get("type", "message" if "role" in raw else None)
    if kind == "message":
        return _message(convert(raw, MessageIn, param), param)
    if kind == "function_call":
        call = convert(raw, FunctionCallIn, param)
        if not _is_json_object(call.arguments):
            raise APIError(
                400,
                "a function call's 'arguments' must be a JSON object (as text)",
                param=f"{param}.arguments",
            )
        return FunctionCallItem(
            call.id or new_id("fc"),
            call.call_id,
            call.name,
            call.arguments,
            "completed",
            call.namespace,
        )
    if kind == "function_call_output":
        result = convert(raw, FunctionCallOutputIn, param)
        output = result.output
        if not isinstance(output, str):
            output = "".join(
                _text_part(p, f"{param}.output[{j}]", "a function call output")
                for j, p in enumerate(output)
            )
        return FunctionCallOutputItem(result.id or new_id("fco"), result.call_id, output)
    if kind == "reasoning":
        reasoning = convert(raw, ReasoningIn, param)
        if reasoning.encrypted_content is not None:
            text = decode_reasoning(reasoning.encrypted_content, f"{param}.encrypted_content")
        else:
            text = "".join(part.text for part in reasoning.content or ())
        return ReasoningItem(
            reasoning.id or new_id("rs"),
            summary=[],
            content=[ReasoningText(text)],
            encrypted_content=reasoning.encrypted_content,
        )
    if kind == "item_reference":
        reference = convert(raw, ItemReferenceIn, param)
        found = resolve(reference.id) if resolve is not None else None
        if found is None:
            raise APIError(
                400,
                f"no stored item has the id {reference.id!r} (references resolve to the "
                "output of responses stored here, with 'store': true)",
                param=f"{param}.id",
            )
        return found
    if kind in SERVER_ITEM_TYPES:
        raise APIError(
            400,
            f"'{kind}' items are not supported: this server runs no built-in tools; "
            "only message, function_call, function_call_output and reasoning items are",
            param=f"{param}.type",
        )
    raise APIError(
        400,
        f"unknown input item type {kind!r}; expected message, function_call, "
        "function_call_output or reasoning",
        param=f"{param}.type",
    )


def _message(message: MessageIn, param: str) -> MessageItem:
    content = message.content
    if isinstance(content, str):
        text_part: type[InputText] | type[OutputText] = (
            OutputText if message.role == "assistant" else InputText
        )
        parts: list[Any] = [text_part(content)]
    else:
        parts = [_part(message.role, p, f"{param}.content[{j}]") for j, p in enumerate(content)]
    return MessageItem(message.id or new_id("msg"), "completed", message.role, parts)


def _part(role: str, part: PartIn, param: str) -> Any:
    if role == "assistant":
        if isinstance(part, OutputTextIn):
            return OutputText(part.text)
        if isinstance(part, RefusalIn):
            return Refusal(part.refusal)
        raise APIError(400, "assistant messages have 'output_text' or 'refusal' parts", param=param)
    if isinstance(part, InputTextIn):
        return InputText(part.text)
    if isinstance(part, InputImageIn) and role == "user":
        if part.image_url is None:
            raise APIError(
                400,
                "an image part needs an 'image_url' (a data: or https: URL); "
                "file ids are not supported by this server",
                param=param,
            )
        return InputImage(part.image_url, part.detail or "auto")
    if isinstance(part, InputFileIn):
        raise APIError(400, "file inputs are not supported by this server", param=param)
    if isinstance(part, InputImageIn):
        raise APIError(400, "only user messages may have images", param=param)
    raise APIError(
        400, f"{role} messages have 'input_text' (or, for users, 'input_image') parts", param=param
    )


def _text_part(part: PartIn, param: str, what: str) -> str:
    if isinstance(part, InputTextIn | OutputTextIn):
        return part.text
    raise APIError(400, f"{what} may only have text parts on this server", param=param)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


# --- items -> chat transcript --------------------------------------------------------

ImageLoader = Callable[[str, str], Awaitable[bytes]]


async def chat_messages(
    items: list[Item],
    *,
    instructions: str | None,
    vision: bool,
    load_image: ImageLoader,
    params: list[str] | None = None,
) -> list[ChatMessage]:
    """The transcript of a conversation for the worker.

    ``params`` names each item in errors (``input[3]``; default: by position).
    Images are loaded (``load_image(url, param)``) only for a vision model;
    any other model answers an image with a 400 naming it, as chat does."""
    names = params or [f"input[{i}]" for i in range(len(items))]
    out: list[ChatMessage] = []
    system: list[str] = [instructions] if instructions else []
    leading = True
    turn: ChatMessage | None = None  # the assistant turn being built

    def close() -> None:
        nonlocal turn
        if turn is not None:
            turn.content = turn.content or ""
            out.append(turn)
            turn = None

    for item, param in zip(items, names, strict=True):
        if isinstance(item, MessageItem) and item.role in ("system", "developer"):
            text = _joined(item)
            if leading:
                system.append(text)
                continue
            close()
            out.append(ChatMessage("system", text))
            continue
        leading = False
        if isinstance(item, MessageItem) and item.role == "assistant":
            if turn is not None and turn.tool_calls:
                close()
            turn = turn or ChatMessage("assistant", "")
            turn.content = (turn.content or "") + _joined(item)
        elif isinstance(item, MessageItem):
            close()
            out.append(await _user_message(item, param, vision, load_image))
        elif isinstance(item, ReasoningItem):
            if turn is not None and (turn.content or turn.tool_calls):
                close()
            turn = turn or ChatMessage("assistant", "")
            turn.reasoning += "".join(part.text for part in item.content or ())
        elif isinstance(item, FunctionCallItem):
            turn = turn or ChatMessage("assistant", "")
            turn.tool_calls = [*(turn.tool_calls or []), _call(item)]
        else:
            close()
            output = item.output if isinstance(item.output, str) else ""
            out.append(ChatMessage("tool", output, tool_call_id=item.call_id))
    close()
    if system:
        out.insert(0, ChatMessage("system", "\n\n".join(system)))
    return out


def _call(item: FunctionCallItem) -> ToolCall:
    return ToolCall(item.call_id, item.name, item.arguments)


def _joined(item: MessageItem) -> str:
    texts = []
    for part in item.content:
        if isinstance(part, InputText | OutputText):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            texts.append(part.refusal)
    return "".join(texts)


async def _user_message(
    item: MessageItem, param: str, vision: bool, load_image: ImageLoader
) -> ChatMessage:
    images: list[bytes] = []
    for j, part in enumerate(item.content):
        if not isinstance(part, InputImage):
            continue
        where = f"{param}.content[{j}]"
        if not vision:
            raise APIError(
                400, "this model accepts text only; image parts need a vision model", param=where
            )
        assert part.image_url is not None  # input_items() requires one
        images.append(await load_image(part.image_url, where))
    return ChatMessage("user", _joined(item), images=images)
