"""A Responses request's conversation: previous_response_id chains and what truncation keeps."""

from __future__ import annotations

import pytest

from gateway.errors import APIError
from gateway.responses_input import input_items
from gateway.responses_objects import MessageItem, OutputText
from gateway.responses_prompt import _previous, _without_orphans
from tests.gateway.test_responses_events import skeleton
from tests.gateway.test_responses_store import store_at

TURN = input_items([{"role": "user", "content": "hi"}])


def test_a_chain_is_the_previous_context_then_its_output() -> None:
    store = store_at(":memory:")
    reply = MessageItem("msg_r", "completed", "assistant", [OutputText("hello")])
    store.put(skeleton(id="resp_1", status="completed", output=[reply]), TURN)
    previous, items = _previous(store, "resp_1")
    assert previous.id == "resp_1" and items == [*TURN, reply]


def test_an_unknown_or_unfinished_previous_response_is_a_400() -> None:
    store = store_at(":memory:")
    with pytest.raises(APIError) as caught:
        _previous(store, "resp_nope")
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    store.put(skeleton(id="resp_bg", status="in_progress", background=True), TURN)
    with pytest.raises(APIError) as caught:
        _previous(store, "resp_bg")
    assert "in_progress" in caught.value.message


def test_dropping_a_call_drops_its_output_too() -> None:
    items = input_items(
        [
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ]
    )
    assert _without_orphans(items, [1, 2, 3]) == [2, 3]
    assert _without_orphans(items, [0, 1, 2, 3]) == [0, 1, 2, 3]
