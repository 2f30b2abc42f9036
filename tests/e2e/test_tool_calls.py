"""OpenAI tool calling through the gateway, with the OpenAI SDK.

The demo models have random weights: a forced call ("required" or a named
function) is well formed and its arguments validate only because decoding
is constrained by the call's grammar.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import openai
import pytest

from tests.e2e.conftest import LLAMA, QWEN

MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 6}},
    "required": ["zone"],
    "additionalProperties": False,
}
PARAMS = {"get_weather": WEATHER, "get_time": TIME}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": name, "description": f"{name} somewhere", "parameters": params},
    }
    for name, params in PARAMS.items()
]
NAMED = {"type": "function", "function": {"name": "get_time"}}


def ask(client: openai.OpenAI, model: str, seed: int, **extra: Any) -> Any:
    kwargs: dict[str, Any] = {"tools": TOOLS, "max_tokens": 300, **extra}
    return client.chat.completions.create(
        model=model, messages=MESSAGES, temperature=1.0, seed=seed, **kwargs
    )


def check_call(call: Any, names: set[str]) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in names
    jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])


@pytest.mark.parametrize("model", [LLAMA, QWEN])
@pytest.mark.parametrize(
    ("choice", "names"), [("required", {"get_weather", "get_time"}), (NAMED, {"get_time"})]
)
def test_forced_call_validates_on_8_seeds(
    client: openai.OpenAI, model: str, choice: Any, names: set[str]
) -> None:
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda s: ask(client, model, s, tool_choice=choice), range(8)))
    for reply in replies:
        choice_ = reply.choices[0]
        assert choice_.finish_reason == "tool_calls"
        assert choice_.message.content is None
        (call,) = choice_.message.tool_calls
        check_call(call, names)


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_streamed_fragments_reassemble_to_the_same_call(client: openai.OpenAI, model: str) -> None:
    for seed in range(3):
        chunks = list(ask(client, model, seed, tool_choice="required", stream=True))
        calls: dict[int, dict[str, Any]] = {}
        for c in chunks:
            for frag in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                if frag.index not in calls:  # the head: id, type, name, arguments ""
                    assert frag.id and frag.type == "function" and frag.function.name
                    assert frag.function.arguments == ""
                    calls[frag.index] = {"id": frag.id, "name": frag.function.name, "args": ""}
                else:
                    assert frag.id is None
                    calls[frag.index]["args"] += frag.function.arguments or ""
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        assert finish == "tool_calls"
        (streamed,) = calls.values()
        whole = ask(client, model, seed, tool_choice="required").choices[0].message.tool_calls[0]
        assert (streamed["name"], streamed["args"]) == (
            whole.function.name,
            whole.function.arguments,
        )
        jsonschema.validate(json.loads(streamed["args"]), PARAMS[streamed["name"]])


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_round_trip_with_a_tool_result(client: openai.OpenAI, model: str) -> None:
    first = ask(client, model, 1, tool_choice="required").choices[0].message
    (call,) = first.tool_calls
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    for choice in ("auto", "none"):
        reply = client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, tool_choice=choice, max_tokens=20, seed=2
        )
        assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert reply.usage.prompt_tokens > 50  # the tools and the call were rendered


@pytest.mark.parametrize("model", [LLAMA, QWEN])
@pytest.mark.parametrize("stream", [False, True])
def test_auto_gives_content_or_valid_calls(client: openai.OpenAI, model: str, stream: bool) -> None:
    for seed in range(3):
        reply = ask(client, model, seed, max_tokens=40, stream=stream)
        if stream:
            finish = [c.choices[0].finish_reason for c in reply if c.choices][-1]
            assert finish in ("stop", "length", "tool_calls")
            continue
        message = reply.choices[0].message
        assert message.content is not None or message.tool_calls
        for call in message.tool_calls or []:
            assert isinstance(json.loads(call.function.arguments), dict)


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tools": [{"type": "web_search"}]}, "tools"),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "minProperties": "x"},
                    },
                }
            ]
        },
        "tools[0].function.parameters",
    ),
    (
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
            ]
        },
        "tools[0].function.parameters",
    ),
    ({"tools": None, "tool_choice": "required"}, "tool_choice"),
    (
        {"tool_choice": "required", "response_format": {"type": "json_object"}},
        "response_format",
    ),
]


@pytest.mark.parametrize(("extra", "param"), BAD_REQUESTS)
def test_bad_tool_requests_are_400s_naming_the_field(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    kwargs: dict[str, Any] = {"tools": TOOLS, **extra}
    if kwargs["tools"] is None:
        del kwargs["tools"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=5, **kwargs)
    assert (err.value.param or "").startswith(param), err.value


def test_bad_tool_call_arguments_in_history_are_a_400(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    ]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=LLAMA, messages=messages, tools=TOOLS, max_tokens=5)
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"
