"""Anthropic's Messages API (POST /v1/messages), with the official anthropic SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from tests.e2e.conftest import BROKEN, LLAMA, QWEN, QWEN_MAX_PENDING
from tests.e2e.harness import Stack
from tests.e2e.test_tool_calls import PARAMS, TIME

HI: list[Any] = [{"role": "user", "content": "Name a colour."}]
# anthropic 2.x dropped temperature/top_p/top_k from its typed arguments (newer
# Claude models reject them); the API field is still sent through extra_body.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    # No retries: the tests check the first answer, 503s included.
    with anthropic.Anthropic(base_url=stack.base_url, api_key="unused", max_retries=0) as c:
        yield c


def greedy(
    claude: anthropic.Anthropic, model: str = LLAMA, **kwargs: Any
) -> anthropic.types.Message:
    kwargs.setdefault("messages", HI)
    kwargs.setdefault("max_tokens", 20)
    return claude.messages.create(model=model, extra_body=GREEDY, **kwargs)


def text_of(message: anthropic.types.Message) -> str:
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    return block.text


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_message_has_anthropic_shape_and_usage(claude: anthropic.Anthropic, model: str) -> None:
    message = claude.messages.create(model=model, messages=HI, max_tokens=12)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == model
    assert isinstance(text_of(message), str)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert 1 <= message.usage.output_tokens <= 12


def test_same_tokens_as_chat_completions(
    claude: anthropic.Anthropic, client: openai.OpenAI
) -> None:
    """Both APIs become the same ChatJob: system first, then the turns."""
    system, turns = "You are terse.", [*HI, {"role": "assistant", "content": "Red."}, *HI]
    message = greedy(claude, QWEN, system=system, messages=turns, max_tokens=24)
    chat = client.chat.completions.create(
        model=QWEN,
        messages=[{"role": "system", "content": system}, *turns],
        max_tokens=24,
        temperature=0,
    )
    assert text_of(message) == chat.choices[0].message.content
    assert chat.usage is not None
    assert message.usage.input_tokens == chat.usage.prompt_tokens
    assert message.usage.output_tokens == chat.usage.completion_tokens


def test_system_prompt_as_string_or_text_blocks(claude: anthropic.Anthropic) -> None:
    as_string = greedy(claude, system="You are terse. Answer in one word.")
    as_blocks = greedy(
        claude,
        system=[
            {"type": "text", "text": "You are terse. "},
            {"type": "text", "text": "Answer in one word.", "cache_control": {"type": "ephemeral"}},
        ],
    )
    without = greedy(claude)
    assert text_of(as_string) == text_of(as_blocks)
    assert as_string.usage.input_tokens > without.usage.input_tokens


def test_content_as_text_blocks_equals_a_string(claude: anthropic.Anthropic) -> None:
    blocks = [{"type": "text", "text": "Name a "}, {"type": "text", "text": "colour."}]
    as_blocks = greedy(claude, messages=[{"role": "user", "content": blocks}])
    assert text_of(as_blocks) == text_of(greedy(claude))


def test_stream_matches_non_streamed_text(claude: anthropic.Anthropic) -> None:
    whole = greedy(claude, max_tokens=30)
    with claude.messages.stream(
        model=LLAMA, messages=HI, max_tokens=30, extra_body=GREEDY
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text_of(whole)
    assert text_of(final) == text_of(whole)
    assert final.id.startswith("msg_") and final.model == LLAMA
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def wire_events(raw: str) -> list[dict[str, Any]]:
    """The payloads of a raw SSE body, each checked to be named after its type."""
    events = []
    for chunk in raw.split("\n\n"):
        if not chunk:
            continue
        name_line, data_line = chunk.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name  # every event is named after its payload's type
        events.append(data)
    return events


def assert_one_block_sequence(events: list[dict[str, Any]]) -> None:
    """Anthropic's event order for a message of one content block."""
    names = [e["type"] for e in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 1
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_stream_event_sequence_on_the_wire(stack: Stack) -> None:
    body = {"model": LLAMA, "messages": HI, "max_tokens": 16, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{stack.base_url}/v1/messages", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = wire_events(raw)
    assert_one_block_sequence(events)
    start = events[0]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["model"] == LLAMA
    assert start["stop_reason"] is None and "input_tokens" in start["usage"]
    assert events[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert all(e["index"] == 0 and e["delta"]["type"] == "text_delta" for e in events[3:-3])
    end = events[-2]
    assert end["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert end["usage"]["output_tokens"] == 16 and end["usage"]["input_tokens"] > 0


def test_max_tokens_stop_reason(claude: anthropic.Anthropic) -> None:
    message = greedy(claude, max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None
    assert message.usage.output_tokens == 5


def test_stop_sequences_cut_the_text(claude: anthropic.Anthropic) -> None:
    text = text_of(greedy(claude, max_tokens=30))
    assert len(text) >= 6
    stop = text[3:6]
    cut = greedy(claude, max_tokens=30, stop_sequences=["never-generated", stop])
    assert text_of(cut) == text[: text.index(stop)]
    assert cut.stop_reason == "stop_sequence"
    assert cut.stop_sequence == stop


def test_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        claude.messages.create(model="claude-17", messages=HI, max_tokens=4)
    assert err.value.type == "not_found_error"
    assert "claude-17" in (err.value.api_message or "")


def test_worker_that_failed_to_load_is_503_naming_it(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as err:
        claude.messages.create(model=BROKEN, messages=HI, max_tokens=4)
    assert err.value.status_code == 503
    assert err.value.type == "overloaded_error"
    assert BROKEN in (err.value.api_message or "")


def test_full_queue_is_429_with_retry_after(claude: anthropic.Anthropic, stack: Stack) -> None:
    streams = [
        claude.messages.create(
            model=QWEN, messages=HI, max_tokens=1000, stream=True, extra_body=GREEDY
        )
        for _ in range(QWEN_MAX_PENDING)
    ]
    try:
        with pytest.raises(anthropic.RateLimitError) as err:
            claude.messages.create(model=QWEN, messages=HI, max_tokens=2)
        assert err.value.type == "rate_limit_error"
        assert err.value.response.headers["retry-after"] == "1"
    finally:
        for stream in streams:
            stream.close()
    stack.wait_until(lambda h: h["models"][QWEN]["in_flight"] == 0, 5, "the streams to end")


def test_error_mid_stream_is_an_error_event(claude: anthropic.Anthropic) -> None:
    """A prompt over the context length fails in the worker, after the 200 went out."""
    long = [{"role": "user", "content": "colour " * 3000}]  # QWEN's context is 2048
    with (
        pytest.raises(anthropic.APIStatusError) as err,
        claude.messages.stream(model=QWEN, messages=long, max_tokens=4) as stream,
    ):
        stream.get_final_message()
    assert err.value.type == "invalid_request_error"
    assert "context length" in (err.value.api_message or "")


def test_missing_max_tokens_is_400_naming_it(stack: Stack) -> None:
    # Raw HTTP: the SDK itself refuses to send a request without max_tokens.
    r = httpx.post(f"{stack.base_url}/v1/messages", json={"model": LLAMA, "messages": HI})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert r.headers["x-request-id"] == body["request_id"]


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
DOC = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}]},
            "messages[0].content[1]",
        ),
        ({"messages": [{"role": "user", "content": [DOC]}]}, "messages[0].content[0]"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"top_k": -1}, "top_k"),
        ({"output_config": {"format": {"type": "json_schema", "schema": {}}}}, "output_config"),
        ({"temperature": 1.5}, "temperature"),  # Anthropic's range is 0..1
        ({"messages": [*HI, {"role": "assistant", "content": "Re"}]}, "messages[1].role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_unsupported_or_invalid_is_400_naming_the_field(
    claude: anthropic.Anthropic, fields: dict[str, Any], named: str
) -> None:
    request: dict[str, Any] = {"model": LLAMA, "messages": HI, "max_tokens": 4}
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(**request, extra_body=fields)
    assert err.value.type == "invalid_request_error"
    assert named in (err.value.api_message or "")


def test_top_k_is_honoured(claude: anthropic.Anthropic) -> None:
    # Sampling at temperature 1 from the single likeliest token is greedy decoding.
    top_1 = claude.messages.create(
        model=QWEN, messages=HI, max_tokens=24, extra_body={"temperature": 1, "top_k": 1}
    )
    assert text_of(top_1) == text_of(greedy(claude, QWEN, max_tokens=24))


def test_disabled_thinking_and_metadata_are_accepted(claude: anthropic.Anthropic) -> None:
    message = greedy(
        claude,
        max_tokens=4,
        thinking={"type": "disabled"},
        metadata={"user_id": "u-1"},
        output_config={"effort": "low"},
    )
    assert message.usage.output_tokens == 4


# --- tools ---------------------------------------------------------------------
# The demo models have random weights: a forced call's input validates only
# because decoding is constrained by the call's grammar (as for chat, in
# test_tool_calls.py, whose tools these are in Anthropic's shape).

WEATHER_Q: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: list[Any] = [
    {"name": name, "description": f"{name} somewhere", "input_schema": schema}
    for name, schema in PARAMS.items()
]
ANY = {"type": "any"}
NAMED_TOOL = {"type": "tool", "name": "get_time"}


def ask_tools(
    claude: anthropic.Anthropic, model: str, seed: int, **kwargs: Any
) -> anthropic.types.Message:
    kwargs.setdefault("max_tokens", 300)
    kwargs.setdefault("messages", WEATHER_Q)
    return claude.messages.create(
        model=model, tools=TOOLS, extra_body={"temperature": 1, "seed": seed}, **kwargs
    )


def check_tool_use(block: Any, names: set[str]) -> None:
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert block.name in names
    jsonschema.validate(block.input, PARAMS[block.name])


@pytest.mark.parametrize("model", [LLAMA, QWEN])
@pytest.mark.parametrize(
    ("choice", "names"), [(ANY, {"get_weather", "get_time"}), (NAMED_TOOL, {"get_time"})]
)
def test_forced_tool_use_validates_on_6_seeds(
    claude: anthropic.Anthropic, model: str, choice: Any, names: set[str]
) -> None:
    with ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(lambda s: ask_tools(claude, model, s, tool_choice=choice), range(6))
        )
    for reply in replies:
        assert reply.stop_reason == "tool_use"
        assert reply.stop_sequence is None
        (block,) = reply.content  # no text block: the output is the call
        check_tool_use(block, names)


@pytest.mark.parametrize("model", [LLAMA, QWEN])
@pytest.mark.parametrize("choice", [ANY, NAMED_TOOL, None])
def test_streamed_tool_use_equals_non_streamed(
    claude: anthropic.Anthropic, model: str, choice: Any
) -> None:
    extra = {"tool_choice": choice} if choice is not None else {}
    for seed in range(3):
        whole = ask_tools(claude, model, seed, max_tokens=60, **extra)
        with claude.messages.stream(
            model=model,
            messages=WEATHER_Q,
            tools=TOOLS,
            max_tokens=60,
            extra_body={"temperature": 1, "seed": seed},
            **extra,
        ) as stream:
            final = stream.get_final_message()
        # Equal but for the calls' ids (new on each request).
        assert [b.model_dump(exclude={"id"}) for b in final.content] == [
            b.model_dump(exclude={"id"}) for b in whole.content
        ]
        assert all(b.id.startswith("toolu_") for b in final.content if b.type == "tool_use")
        assert final.stop_reason == whole.stop_reason
        assert final.usage.input_tokens == whole.usage.input_tokens
        assert final.usage.output_tokens == whole.usage.output_tokens


def test_tool_use_stream_events_on_the_wire(stack: Stack) -> None:
    body = {
        "model": QWEN,
        "messages": WEATHER_Q,
        "tools": TOOLS,
        "tool_choice": NAMED_TOOL,
        "max_tokens": 300,
        "temperature": 1,
        "seed": 4,
        "stream": True,
    }
    with httpx.stream("POST", f"{stack.base_url}/v1/messages", json=body, timeout=60) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    events = wire_events(raw)
    assert_one_block_sequence(events)
    block = events[1]["content_block"]
    assert events[1]["index"] == 0
    assert block["type"] == "tool_use" and block["name"] == "get_time"
    assert block["id"].startswith("toolu_") and block["input"] == {}
    pieces = [e["delta"] for e in events[3:-3]]
    assert all(e["index"] == 0 for e in events[3:-2])
    assert all(p["type"] == "input_json_delta" for p in pieces)
    jsonschema.validate(json.loads("".join(p["partial_json"] for p in pieces)), TIME)
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def tool_turns(block: Any, result: Any, text: str | None = None) -> list[Any]:
    user: list[Any] = [{"type": "tool_result", "tool_use_id": block.id, "content": result}]
    if text is not None:
        user.append({"type": "text", "text": text})
    return [
        *WEATHER_Q,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input},
            ],
        },
        {"role": "user", "content": user},
    ]


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_round_trip_renders_as_the_chat_completion_does(
    claude: anthropic.Anthropic, client: openai.OpenAI, model: str
) -> None:
    """tool_use -> an assistant turn's tool_calls, tool_result -> a "tool"
    message, then the user's text: the same prompt, so the same greedy answer."""
    (block,) = ask_tools(claude, model, 1, tool_choice=ANY).content
    result = '{"temperature": 21}'
    as_blocks = [{"type": "text", "text": '{"temperature": '}, {"type": "text", "text": "21}"}]
    openai_tools = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t["description"],
                "parameters": t["input_schema"],
            },
        }
        for t in TOOLS
    ]
    chat = client.chat.completions.create(
        model=model,
        messages=[
            *WEATHER_Q,
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": block.id,
                        "type": "function",
                        "function": {"name": block.name, "arguments": json.dumps(block.input)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": block.id, "content": result},
            {"role": "user", "content": "And tomorrow?"},
        ],
        tools=openai_tools,
        tool_choice="none",
        max_tokens=20,
        temperature=0,
    )
    for content in (result, as_blocks):
        message = claude.messages.create(
            model=model,
            messages=tool_turns(block, content, "And tomorrow?"),
            tools=TOOLS,
            tool_choice={"type": "none"},
            max_tokens=20,
            extra_body=GREEDY,
        )
        assert chat.usage is not None
        assert message.usage.input_tokens == chat.usage.prompt_tokens
        assert text_of(message) == chat.choices[0].message.content
        assert message.stop_reason in ("end_turn", "max_tokens")
    # An error result and no user text answer too (auto: text or a call).
    error = [{"type": "tool_result", "tool_use_id": block.id, "content": "no", "is_error": True}]
    reply = claude.messages.create(
        model=model,
        messages=[*tool_turns(block, result)[:2], {"role": "user", "content": error}],
        tools=TOOLS,
        max_tokens=20,
        extra_body={"seed": 2},
    )
    assert reply.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert reply.usage.input_tokens > 50  # the tools and the call were rendered


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_auto_gives_text_or_valid_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    for seed in range(3):
        for choice in ({"type": "auto", "disable_parallel_tool_use": True}, None):
            extra = {"tool_choice": choice} if choice is not None else {}
            reply = ask_tools(claude, model, seed, max_tokens=40, **extra)
            assert reply.content
            assert reply.stop_reason in ("end_turn", "max_tokens", "tool_use")
            kinds = [b.type for b in reply.content]
            assert kinds.count("text") <= 1 and "text" not in kinds[1:]  # text first
            for b in reply.content:
                if b.type == "tool_use":
                    assert b.id.startswith("toolu_") and isinstance(b.input, dict)


def test_tool_choice_none_gives_text(claude: anthropic.Anthropic) -> None:
    reply = ask_tools(claude, LLAMA, 0, max_tokens=10, tool_choice={"type": "none"})
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in reply.content] == ["text"]


TOOL_USE = {"type": "tool_use", "id": "t1", "name": "get_time", "input": {"zone": "UTC"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "t1", "content": "noon"}
BAD_TOOL_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice"),
    (
        {"tools": [{"name": "f", "input_schema": {"type": "object", "minProperties": "x"}}]},
        "tools[0].input_schema",
    ),
    ({"tools": [{"name": "f", "input_schema": {"type": "string"}}]}, "tools[0].input_schema"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tools": [{"name": "bad name", "input_schema": {}}]}, "tools[0].name"),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "tools[1].name"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": None, "tool_choice": ANY}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [TOOL_USE]}]}, "messages[0].content[0]"),
    (
        {"messages": [*HI, {"role": "assistant", "content": [TOOL_RESULT]}, *HI]},
        "messages[1].content[0]",
    ),
    (
        {
            "messages": [
                *HI,
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": [{**TOOL_RESULT, "content": [IMAGE]}]},
            ]
        },
        "messages[2].content[0].content[0]",
    ),
]


@pytest.mark.parametrize(("extra", "named"), BAD_TOOL_REQUESTS)
def test_bad_tool_requests_are_400s_naming_the_field(
    claude: anthropic.Anthropic, extra: dict[str, Any], named: str
) -> None:
    fields: dict[str, Any] = {"tools": TOOLS, **extra}
    if fields["tools"] is None:
        del fields["tools"]
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model=LLAMA, messages=HI, max_tokens=4, extra_body=fields)
    assert err.value.type == "invalid_request_error"
    assert err.value.body["type"] == "error"  # type: ignore[index]
    assert named in (err.value.api_message or ""), err.value.api_message


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_count_tokens_equals_the_input_tokens_of_the_message(
    claude: anthropic.Anthropic, model: str
) -> None:
    system, turns = "You are terse.", [*HI, {"role": "assistant", "content": "Red."}, *HI]
    tools: Any = [{"name": "get_time", "description": "the time", "input_schema": PARAMS}]
    for extra in ({}, {"tools": tools}):
        count = claude.messages.count_tokens(model=model, system=system, messages=turns, **extra)
        message = greedy(claude, model, system=system, messages=turns, max_tokens=1, **extra)
        assert count.input_tokens == message.usage.input_tokens > 0
    with_tools = claude.messages.count_tokens(model=model, messages=HI, tools=tools)
    assert (
        with_tools.input_tokens
        > claude.messages.count_tokens(model=model, messages=HI).input_tokens
    )


def test_count_tokens_errors_are_anthropic_envelopes(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=HI)
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.count_tokens(model=LLAMA, messages=[])
    assert err.value.body["error"]["type"] == "invalid_request_error"
