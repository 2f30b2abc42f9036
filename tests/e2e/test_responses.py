"""The Responses API through a real gateway and real workers, with the official
``openai`` SDK; every object and event checked against the Open Responses spec."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import png_data_url
from tests.e2e.conftest import QWEN, THINK_MESSAGES, THINKING, VLM
from tests.e2e.harness import Stack, running_stack
from tests.responses_spec import sse_events, validate_event, validate_response

SHORT = "demo-qwen2-short"  # QWEN's weights with a 200-token context
SHIP_LOG = "Entry: the wind, the waves, the gulls over the harbour wall at dawn."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def stack(
    demo_models: dict[str, Path],
    demo_vlm: Path,
    thinking_markers: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("responses")
    qwen = str(demo_models[QWEN])
    entries = [
        {"name": QWEN, "family": "llm", "path": qwen},
        {
            "name": THINKING,
            "family": "llm",
            "path": str(demo_models["demo-llama-tiny"]),
            "options": {"reasoning": list(thinking_markers[:2])},
        },
        {"name": SHORT, "family": "llm", "path": qwen, "options": {"context_length": 200}},
        {"name": VLM, "family": "vlm", "path": str(demo_vlm)},
    ]
    store = {"responses_store": str(tmp / "responses.sqlite3")}
    with running_stack(entries, tmp, gateway=store) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def create_raw(client: openai.OpenAI, **fields: Any) -> dict[str, Any]:
    """The Response as JSON, checked against the spec."""
    raw = client.responses.with_raw_response.create(**fields)
    data = json.loads(raw.text)
    validate_response(data)
    return data


def stream_raw(stack: Stack, **fields: Any) -> list[dict[str, Any]]:
    """A streamed response's events, each checked against the spec and its ``event:`` line."""
    r = httpx.post(f"{stack.base_url}/v1/responses", json={**fields, "stream": True}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    for name, data in events:
        validate_event(data, name)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    return [data for _, data in events]


def test_a_response_has_text_usage_and_the_spec_s_shape(client: openai.OpenAI) -> None:
    data = create_raw(client, model=QWEN, input="Name a colour.", max_output_tokens=12)
    assert data["object"] == "response" and data["id"].startswith("resp_")
    assert data["model"] == QWEN and data["status"] in ("completed", "incomplete")
    usage = data["usage"]
    assert usage["input_tokens"] > 0 and 1 <= usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    reply = client.responses.retrieve(data["id"])
    assert reply.output_text == data["output"][0]["content"][0]["text"]


def test_streamed_text_equals_the_whole_text_at_temperature_0(
    client: openai.OpenAI, stack: Stack
) -> None:
    fields = {"model": QWEN, "input": SHIP_LOG, "max_output_tokens": 20, "temperature": 0}
    whole = client.responses.create(**fields)
    events = stream_raw(stack, **fields)
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == whole.output_text
    assert events[-1]["response"]["usage"]["output_tokens"] == whole.usage.output_tokens
    # The SDK's own stream helper reads the same events.
    with client.responses.stream(**fields) as stream:
        sdk_text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert sdk_text == whole.output_text


def test_a_ten_turn_chain_rebuilds_the_conversation_and_reuses_its_cache(
    client: openai.OpenAI,
) -> None:
    """Each turn's prompt is the previous prompt and reply, token for token, so
    the prefix cache covers every earlier turn."""
    instructions = "You are a ship's log."
    turns: list[Any] = []
    for turn in range(10):
        text = f"{turn}: {SHIP_LOG}" * (3 if turn == 0 else 1)
        turns.append(
            client.responses.create(
                model=QWEN,
                input=text,
                instructions=instructions,  # not carried over: sent each turn, as SDKs do
                previous_response_id=turns[-1].id if turns else None,
                max_output_tokens=8,
                temperature=0,
            )
        )
    for before, after in zip(turns, turns[1:], strict=False):
        assert after.previous_response_id == before.id
        cached = after.usage.input_tokens_details.cached_tokens
        assert cached == before.usage.input_tokens + before.usage.output_tokens
    # input_items lists the whole conversation: 10 user turns, 9 replies.
    items = list(client.responses.input_items.list(turns[-1].id, order="asc", limit=100))
    roles = [item.role for item in items if item.type == "message"]
    assert roles == ["user", "assistant"] * 9 + ["user"]
    # The chain does not carry the instructions: without them the prompt is shorter.
    chained = {"model": QWEN, "input": "More.", "previous_response_id": turns[-1].id}
    bare = client.responses.input_tokens.count(**chained).input_tokens
    instructed = client.responses.input_tokens.count(**chained, instructions=instructions)
    assert bare < instructed.input_tokens


def test_store_false_is_not_kept_and_delete_removes(client: openai.OpenAI) -> None:
    unstored = client.responses.create(model=QWEN, input="hi", max_output_tokens=4, store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    stored = client.responses.create(model=QWEN, input="hi", max_output_tokens=4)
    assert client.responses.retrieve(stored.id).id == stored.id
    client.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(stored.id)


def test_item_references_name_stored_output(client: openai.OpenAI) -> None:
    """As the Vercel AI SDK sends earlier output when it is stored."""
    first = client.responses.create(model=QWEN, input="hi", max_output_tokens=4)
    again = create_raw(
        client,
        model=QWEN,
        input=[
            {"role": "user", "content": "hi"},
            {"type": "item_reference", "id": first.output[0].id},
            {"role": "user", "content": "and?"},
        ],
        max_output_tokens=4,
    )
    items = list(client.responses.input_items.list(again["id"], order="asc"))
    assert items[1].id == first.output[0].id and items[1].role == "assistant"


def test_a_forced_call_its_output_and_the_answer(client: openai.OpenAI, stack: Stack) -> None:
    fields = {"model": QWEN, "input": "Weather in Oslo?", "tools": [WEATHER], "temperature": 0}
    data = create_raw(client, **fields, tool_choice="required", max_output_tokens=80)
    (call,) = [item for item in data["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather" and call["status"] == "completed"
    jsonschema.validate(json.loads(call["arguments"]), WEATHER["parameters"])  # strict
    assert data["tools"] == [WEATHER]
    events = stream_raw(stack, **fields, tool_choice="required", max_output_tokens=80)
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == [call["arguments"]]
    answer = create_raw(
        client,
        model=QWEN,
        previous_response_id=data["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny"}],
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=8,
    )
    assert answer["output"][0]["type"] == "message"


def test_text_format_json_schema_is_what_the_output_follows(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "maxLength": 8}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    data = create_raw(
        client,
        model=QWEN,
        input="A colour as JSON.",
        text={
            "format": {"type": "json_schema", "name": "colour", "schema": schema, "strict": True}
        },
        max_output_tokens=40,
        temperature=0,
    )
    jsonschema.validate(json.loads(data["output"][0]["content"][0]["text"]), schema)
    assert data["text"]["format"]["schema"] == schema


def test_reasoning_is_its_own_item_and_hands_back(
    client: openai.OpenAI, thinking_markers: tuple[str, str, str], stack: Stack
) -> None:
    from tests.workers.test_llm_engine import split_reference

    start, end, plain = thinking_markers
    content, reasoning = split_reference(plain, start, end)
    fields = {
        "model": THINKING,
        "input": THINK_MESSAGES[0]["content"],
        "max_output_tokens": 40,
        "temperature": 0,
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    data = create_raw(client, **fields)
    item, message = data["output"][0], data["output"][1]
    assert item["type"] == "reasoning" and item["content"][0]["text"] == reasoning
    assert message["content"][0]["text"] == content
    assert data["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    events = stream_raw(stack, **fields)
    streamed = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    assert streamed == reasoning
    # As Codex does with store false: the whole conversation again, reasoning included.
    again = create_raw(
        client,
        model=THINKING,
        input=[{"role": "user", "content": fields["input"]}, item, message]
        + [{"role": "user", "content": "And then?"}],
        max_output_tokens=4,
        store=False,
    )
    assert again["status"] in ("completed", "incomplete")


def test_a_codex_request_streams_to_completion(stack: Stack) -> None:
    """What Codex CLI 0.171 sends: developer and user items, function tools, a
    namespace tool, the built-in web_search (left out), extra fields."""
    events = stream_raw(
        stack,
        model=QWEN,
        instructions=None,
        input=[
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Be careful."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "say hi"}],
            },
        ],
        tools=[
            {**WEATHER, "strict": False},
            {
                "type": "namespace",
                "name": "files",
                "description": "Files",
                "tools": [
                    {"type": "function", "name": "read_file", "parameters": {"type": "object"}}
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        tool_choice="auto",
        parallel_tool_calls=True,
        reasoning={"summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="thread-1",
        client_metadata={"originator": "codex_exec"},
        max_output_tokens=16,
    )
    final = events[-1]["response"]
    assert final["status"] in ("completed", "incomplete")
    assert [t["name"] for t in final["tools"]] == ["get_weather", "read_file"]
    assert final["prompt_cache_key"] == "thread-1" and final["store"] is False


def test_truncation_disabled_is_a_400_with_counts_and_auto_drops_old_items(
    client: openai.OpenAI,
) -> None:
    long_input = [{"role": "user", "content": f"{i}: {SHIP_LOG}"} for i in range(12)]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=SHORT, input=long_input, max_output_tokens=8)
    assert caught.value.code == "context_length_exceeded"
    assert "200" in caught.value.message
    data = create_raw(client, model=SHORT, input=long_input, truncation="auto", max_output_tokens=8)
    assert data["truncation"] == "auto"
    assert data["usage"]["input_tokens"] + 8 <= 200
    kept = list(client.responses.input_items.list(data["id"], order="asc", limit=100))
    assert 1 <= len(kept) < len(long_input)
    assert kept[-1].content[0].text == long_input[-1]["content"]  # the newest kept


def test_input_tokens_counts_what_create_would_send(client: openai.OpenAI) -> None:
    fields = {"model": QWEN, "input": SHIP_LOG, "instructions": "Be brief.", "tools": [WEATHER]}
    count = client.responses.input_tokens.count(**fields)
    assert count.object == "response.input_tokens"
    assert (
        count.input_tokens
        == client.responses.create(**fields, max_output_tokens=4).usage.input_tokens
    )


def test_background_responses_finish_in_the_store_or_are_cancelled(client: openai.OpenAI) -> None:
    queued = client.responses.create(model=QWEN, input="hi", max_output_tokens=6, background=True)
    assert queued.background is True and queued.status in ("queued", "in_progress")
    reply, deadline = queued, time.monotonic() + 60
    while reply.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.05)  # polling is how background responses are read (OpenAI's docs)
        reply = client.responses.retrieve(queued.id)
    assert reply.status in ("completed", "incomplete") and reply.usage is not None
    long = client.responses.create(
        model=THINKING, input="hi", max_output_tokens=3000, background=True
    )
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(long.id).status == "cancelled"


def test_images_for_the_vision_model_only(client: openai.OpenAI) -> None:
    parts = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": png_data_url()},
    ]
    data = create_raw(
        client, model=VLM, input=[{"role": "user", "content": parts}], max_output_tokens=6
    )
    assert data["usage"]["input_tokens"] > 10
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=QWEN, input=[{"role": "user", "content": parts}])
    assert caught.value.param == "input[0].content[1]"


def test_logprobs_when_included(client: openai.OpenAI) -> None:
    data = create_raw(
        client,
        model=QWEN,
        input="hi",
        max_output_tokens=4,
        include=["message.output_text.logprobs"],
        top_logprobs=2,
    )
    logprobs = data["output"][0]["content"][0]["logprobs"]
    assert len(logprobs) >= 1 and all(len(lp["top_logprobs"]) == 2 for lp in logprobs)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_unknown"}, "previous_response_id"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"tools": [{"type": "computer_use_2099"}]}, "tools[0].type"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**{"model": QWEN, "input": "hi", **fields})
    assert caught.value.param == param


def test_stored_responses_survive_a_gateway_restart(
    demo_models: dict[str, Path], tmp_path: Path
) -> None:
    entries = [{"name": QWEN, "family": "llm", "path": str(demo_models[QWEN])}]
    store = {"responses_store": str(tmp_path / "run" / "responses.sqlite3")}
    with running_stack(entries, tmp_path, gateway=store) as first, first.openai_client() as c:
        made = c.responses.create(model=QWEN, input="Remember me.", max_output_tokens=6)
    with running_stack(entries, tmp_path, gateway=store) as again, again.openai_client() as c:
        kept = c.responses.retrieve(made.id)
        assert kept.output_text == made.output_text and kept.usage == made.usage
        follow = c.responses.create(
            model=QWEN, input="And now?", previous_response_id=made.id, max_output_tokens=4
        )
        assert follow.usage.input_tokens > made.usage.input_tokens


def test_the_js_sdk_creates_streams_and_manages_responses(stack: Stack) -> None:
    from tests.e2e.test_js_clients import node_script

    seen = node_script("openai_responses.mjs", f"{stack.base_url}/v1", QWEN)
    assert seen["streamed"] == seen["text"] == seen["finalText"]  # temperature 0
    assert seen["types"][:2] == ["response.created", "response.in_progress"]
    assert seen["types"][-1] in ("response.completed", "response.incomplete")
    assert seen["usage"]["output_tokens"] >= 1
    assert seen["retrieved"] and seen["items"] == ["message"] and seen["deleted"]
    assert seen["badRequest"] == {
        "status": 400,
        "name": "BadRequestError",
        "param": "previous_response_id",
    }
