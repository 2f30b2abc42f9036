"""gateway/generation.py: what chat and text completions share: a request's
sampling parameters, its tools as a job carries them, and usage."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from gateway.errors import APIError
from gateway.generation import (
    choice_params,
    reject_unsupported,
    sampling_params,
    tool_setup,
    usage_of,
)
from gateway.openai_schemas import ChatCompletionRequest, CompletionRequest
from protocol.messages import Finished, SamplingParams, Usage

HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def chat(**fields: Any) -> ChatCompletionRequest:
    return msgspec.convert({"model": "m", "messages": HI, **fields}, ChatCompletionRequest)


def params(body: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
    return sampling_params(body, max_tokens=None, logprobs=False, top_logprobs=0)


def fails(param: str) -> pytest.RaisesExc[APIError]:
    return pytest.raises(APIError, check=lambda e: e.status == 400 and e.param == param)


# --- sampling ---------------------------------------------------------------------


def test_unset_sampling_fields_take_openais_defaults() -> None:
    p = params(chat())
    assert (p.temperature, p.top_p, p.stop, p.seed, p.json_schema) == (1.0, 1.0, [], None, None)
    assert (p.top_k, p.min_p, p.repetition_penalty, p.logit_bias) == (0, 0.0, 1.0, {})


def test_the_requests_sampling_fields_reach_the_job() -> None:
    body = chat(temperature=0.2, top_p=0.9, seed=3, stop="END", top_k=5, presence_penalty=0.5)
    p = sampling_params(body, max_tokens=7, logprobs=True, top_logprobs=2)
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.stop) == (7, 0.2, 0.9, 3, ["END"])
    assert (p.top_k, p.presence_penalty, p.logprobs, p.top_logprobs) == (5, 0.5, True, 2)


def test_logit_bias_keys_are_token_ids() -> None:
    assert params(chat(logit_bias={"42": -100})).logit_bias == {42: -100}
    with fails("logit_bias"):
        params(chat(logit_bias={"hello": 1}))


def test_json_object_asks_for_any_object() -> None:
    p = params(chat(response_format={"type": "json_object"}))
    assert p.json_schema is not None and json.loads(p.json_schema) == {"type": "object"}


def test_a_json_schema_is_checked_before_the_job_is_sent() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = chat(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    assert json.loads(params(body).json_schema or "") == schema
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    with fails("response_format"):
        params(chat(response_format=bad))


def test_choice_i_samples_with_seed_plus_i() -> None:
    seeded = choice_params(params(chat(seed=10)), 3)
    assert [p.seed for p in seeded] == [10, 11, 12]
    assert [p.seed for p in choice_params(params(chat()), 2)] == [None, None]


def test_an_unsupported_field_is_a_400_naming_it() -> None:
    reject_unsupported(suffix=None, echo=False)
    with fails("suffix"):
        reject_unsupported(suffix="x", echo=False)


# --- tools ------------------------------------------------------------------------


def test_no_tools_reads_no_calls() -> None:
    assert tool_setup(chat()).mode == "none"
    with fails("tool_choice"):
        tool_setup(chat(tool_choice="required"))


@pytest.mark.parametrize(("choice", "mode"), [(None, "auto"), ("auto", "auto"), ("none", "none")])
def test_tools_are_read_from_the_output_unless_choice_is_none(
    choice: str | None, mode: str
) -> None:
    setup = tool_setup(chat(tools=[WEATHER], tool_choice=choice))
    assert setup.mode == mode and setup.json_schema is None
    assert setup.tools is not None and setup.tools[0]["function"]["name"] == "get_weather"


def test_a_named_function_forces_that_call_by_its_schema() -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    setup = tool_setup(chat(tools=[WEATHER, TIME], tool_choice=choice))
    assert setup.mode == "forced" and setup.json_schema is not None
    schema = json.loads(setup.json_schema)
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"] == WEATHER["function"]["parameters"]


def test_required_forces_any_one_of_the_functions() -> None:
    setup = tool_setup(chat(tools=[WEATHER, TIME], tool_choice="required"))
    schema = json.loads(setup.json_schema or "")
    names = [v["properties"]["name"]["const"] for v in schema["anyOf"]]
    assert setup.mode == "forced" and names == ["get_weather", "get_time"]
    # A function without parameters takes an object of arguments.
    assert schema["anyOf"][1]["properties"]["arguments"] == {"type": "object"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": "required",
                "response_format": {"type": "json_object"},
            },
            "response_format",
        ),
    ],
)
def test_bad_tools_are_400s_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with fails(param):
        tool_setup(chat(**fields))


# --- usage ------------------------------------------------------------------------


def test_usage_counts_the_prompt_once_and_every_choices_completion() -> None:
    finished = [
        Finished("a", "stop", Usage(10, 3, cached_tokens=4)),
        Finished("b", "length", Usage(10, 5, cached_tokens=4)),
    ]
    usage = usage_of(finished)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 8, 18)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4


def test_usage_of_nothing_is_zero() -> None:
    assert usage_of([]).total_tokens == 0
