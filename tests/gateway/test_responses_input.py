"""Responses input items: checked (400s naming the item), and turned into chat turns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import APIError
from gateway.responses_input import (
    chat_messages,
    decode_reasoning,
    encode_reasoning,
    input_items,
)
from gateway.responses_objects import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputText,
    MessageItem,
    ReasoningItem,
)
from protocol.messages import ChatMessage, ToolCall


def error_of(raw: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        input_items(raw)
    assert caught.value.status == 400
    return caught.value


async def no_images(url: str, param: str) -> bytes:
    raise AssertionError("no image should be loaded")


def transcript(items: Any, instructions: str | None = None, **kw: Any) -> list[ChatMessage]:
    kw.setdefault("vision", False)
    kw.setdefault("load_image", no_images)
    return asyncio.run(chat_messages(input_items(items), instructions=instructions, **kw))


def test_a_string_is_one_user_message() -> None:
    (item,) = input_items("hi")
    assert isinstance(item, MessageItem) and item.role == "user"
    assert item.content == [InputText("hi")] and item.id.startswith("msg_")


def test_messages_with_and_without_type_keep_their_ids() -> None:
    items = input_items(
        [
            {"role": "user", "content": "a"},
            {"type": "message", "id": "msg_x", "role": "assistant", "content": "b"},
        ]
    )
    assert [i.role for i in items] == ["user", "assistant"]  # type: ignore[union-attr]
    assert items[1].id == "msg_x"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ([{"role": "robot", "content": "x"}], "input[0].role"),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "input[0].content[0].type"),
        (
            [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
            "input[0].content[0]",
        ),
        (
            [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}],
            "input[0].content[0]",
        ),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
            "input[0].content[0]",
        ),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            "input[0].content[0]",
        ),
        (
            [{"role": "system", "content": [{"type": "input_image", "image_url": "x"}]}],
            "input[0].content[0]",
        ),
        (
            [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}],
            "input[0].arguments",
        ),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        ([{"type": "function_call_output", "call_id": "c"}], "input[0].output"),
        (
            [{"type": "reasoning", "encrypted_content": "gAAAA-from-elsewhere"}],
            "input[0].encrypted_content",
        ),
        (["just a string"], "input[0]"),
        ([{"content": "no role, no type"}], "input[0].type"),
        ([{"type": "web_search_call", "id": "ws_1"}], "input[0].type"),
        ([{"type": "teleport"}], "input[0].type"),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0].id"),
        ([{"role": "user", "content": "ok"}, {"role": "user", "content": 5}], "input[1].content"),
    ],
)
def test_a_malformed_item_is_a_400_naming_it(raw: Any, param: str) -> None:
    assert error_of(raw).param == param


def test_encrypted_reasoning_round_trips() -> None:
    text = "Let me think… about ünïcode"
    (item,) = input_items(
        [{"type": "reasoning", "summary": [], "encrypted_content": encode_reasoning(text)}]
    )
    assert isinstance(item, ReasoningItem) and item.content is not None
    assert item.content[0].text == text == decode_reasoning(encode_reasoning(text), "p")


def test_call_outputs_in_text_parts_are_joined() -> None:
    (item,) = input_items(
        [
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            }
        ]
    )
    assert isinstance(item, FunctionCallOutputItem) and item.output == "ab"


def test_instructions_and_leading_developer_messages_make_one_system_turn() -> None:
    messages = transcript(
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "input_text", "text": "Use tools."}]},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": "Later note."},
        ],
        instructions="You are Codex.",
    )
    assert [(m.role, m.content) for m in messages] == [
        ("system", "You are Codex.\n\nBe brief.\n\nUse tools."),
        ("user", "hi"),
        ("system", "Later note."),
    ]


def test_reasoning_text_and_calls_make_one_assistant_turn_then_tool_results() -> None:
    reasoning = encode_reasoning("I should list files.")
    messages = transcript(
        [
            {"role": "user", "content": "list"},
            {"type": "reasoning", "summary": [], "encrypted_content": reasoning},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
            {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "pwd", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "c2", "output": "/tmp"},
            {"role": "assistant", "content": "Done."},
        ]
    )
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    turn = messages[1]
    assert turn.content == "Looking." and turn.reasoning == "I should list files."
    assert turn.tool_calls == [ToolCall("c1", "ls", "{}"), ToolCall("c2", "pwd", "{}")]
    assert (messages[2].tool_call_id, messages[2].content) == ("c1", "a.txt")
    assert messages[4].content == "Done." and messages[4].tool_calls is None


def test_a_call_alone_is_an_assistant_turn_with_empty_content() -> None:
    messages = transcript(
        [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]
    )
    assert messages[0].role == "assistant" and messages[0].content == ""


def test_images_need_a_vision_model() -> None:
    parts = [
        {"type": "input_text", "text": "what?"},
        {"type": "input_image", "image_url": "data:x"},
    ]
    with pytest.raises(APIError) as caught:
        transcript([{"role": "user", "content": parts}])
    assert caught.value.param == "input[0].content[1]"

    seen = []

    async def load(url: str, param: str) -> bytes:
        seen.append((url, param))
        return b"png"

    (message,) = transcript([{"role": "user", "content": parts}], vision=True, load_image=load)
    assert message.images == [b"png"] and message.content == "what?"
    assert seen == [("data:x", "input[0].content[1]")]
    (item,) = input_items([{"role": "user", "content": parts}])
    assert isinstance(item, MessageItem) and item.content[1] == InputImage("data:x", "auto")


def test_function_call_items_keep_their_namespace() -> None:
    (item,) = input_items(
        [
            {
                "type": "function_call",
                "call_id": "c",
                "name": "f",
                "arguments": "{}",
                "namespace": "ns",
            }
        ]
    )
    assert (
        isinstance(item, FunctionCallItem) and item.namespace == "ns" and item.status == "completed"
    )


def test_an_item_reference_is_the_stored_item_it_names() -> None:
    stored = FunctionCallItem("fc_1", "call_1", "f", "{}", "completed")
    found = {"fc_1": stored}.get
    items = input_items([{"type": "item_reference", "id": "fc_1"}], resolve=found)
    assert items == [stored]
    with pytest.raises(APIError) as caught:
        input_items(
            [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "fc_2"}],
            resolve=found,
        )
    assert caught.value.param == "input[1].id"
