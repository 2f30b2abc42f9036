"""A Responses request's tools, tool_choice and text.format as a job carries them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import APIError
from gateway.responses_objects import (
    AllowedToolsChoice,
    FunctionTool,
    FunctionToolChoice,
    JSONSchemaFormatOut,
)
from gateway.responses_schemas import JSONSchemaTextFormat, TextConfig
from gateway.responses_tools import response_tools

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
EXEC = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
# What Codex CLI sends: function tools, a namespace tool, a built-in tool.
CODEX_TOOLS = [
    EXEC,
    {"type": "namespace", "name": "mcp_fs", "description": "files", "tools": [WEATHER]},
    {"type": "web_search", "external_web_access": False},
]


def error_of(tools: Any, choice: Any = None, text: TextConfig | None = None) -> APIError:
    with pytest.raises(APIError) as caught:
        response_tools(tools, choice, text)
    assert caught.value.status == 400
    return caught.value


def test_function_tools_go_to_the_chat_template_and_are_echoed() -> None:
    out = response_tools([WEATHER], None, None)
    assert out.setup.mode == "auto"
    assert out.setup.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert out.tools == [
        FunctionTool("get_weather", "Weather in a city", WEATHER["parameters"], True)
    ]
    assert out.choice == "auto"


def test_codex_tools_namespace_functions_are_callable_by_name_and_web_search_left_out() -> None:
    out = response_tools(CODEX_TOOLS, "auto", None)
    names = [t["function"]["name"] for t in out.setup.tools or []]
    assert names == ["exec_command", "get_weather"]
    assert out.namespaces == {"get_weather": "mcp_fs"}
    assert out.left_out == ["web_search"]
    assert [t.name for t in out.tools] == ["exec_command", "get_weather"]


def test_no_function_tools_means_no_tool_parsing() -> None:
    assert response_tools([{"type": "web_search"}], "auto", None).setup.mode == "none"
    assert response_tools(None, None, None).setup.tools is None


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "custom", "name": "apply_patch"}], "tools[0].type"),
        ([{"type": "teleporter"}], "tools[0].type"),
        (["web_search"], "tools[0].type"),
        ([{"type": "function", "name": "bad name!"}], "tools[0].name"),
        ([{"type": "function"}], "tools[0].name"),
        ([{**EXEC, "parameters": {"type": "array"}}], "tools[0].parameters"),
        ([EXEC, EXEC], "tools[1].name"),
        (
            [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "x"}]}],
            "tools[0].tools[0].type",
        ),
        (
            [{"type": "namespace", "name": "n", "tools": [{**EXEC, "parameters": {"type": 3}}]}],
            "tools[0].tools[0].parameters",
        ),
    ],
)
def test_a_bad_tool_is_a_400_naming_it(tools: Any, param: str) -> None:
    assert error_of(tools).param == param


def test_required_and_named_choices_force_a_call_by_grammar() -> None:
    required = response_tools([WEATHER, EXEC], "required", None)
    assert required.setup.mode == "forced" and required.choice == "required"
    assert "anyOf" in json.loads(required.setup.json_schema or "")
    named = response_tools([WEATHER, EXEC], {"type": "function", "name": "exec_command"}, None)
    schema = json.loads(named.setup.json_schema or "")
    assert schema["properties"]["name"] == {"const": "exec_command"}
    assert named.choice == FunctionToolChoice("exec_command")


def test_allowed_tools_narrow_what_the_model_is_given() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    out = response_tools([WEATHER, EXEC], choice, None)
    assert [t.name for t in out.tools] == ["get_weather"] and out.setup.mode == "forced"
    assert out.choice == AllowedToolsChoice("required", [FunctionToolChoice("get_weather")])


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ("sometimes", "tool_choice"),
        ({"type": "function", "name": "nope"}, "tool_choice"),
        ({"type": "function"}, "tool_choice.name"),
        ({"type": "web_search_preview"}, "tool_choice"),
        ({"type": "mystery"}, "tool_choice"),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]},
            "tool_choice.tools[0]",
        ),
    ],
)
def test_a_bad_tool_choice_is_a_400_naming_it(choice: Any, param: str) -> None:
    assert error_of([WEATHER], choice).param == param


def test_required_without_function_tools_is_a_400() -> None:
    assert error_of([{"type": "web_search"}], "required").param == "tool_choice"


def test_text_format_json_schema_constrains_the_output_and_is_echoed() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    text = TextConfig(JSONSchemaTextFormat("answer", schema, strict=True), verbosity="low")
    out = response_tools(None, None, text)
    assert json.loads(out.text_schema or "") == schema
    assert out.text.format == JSONSchemaFormatOut("answer", None, schema, True)
    assert out.text.verbosity == "low"


def test_a_bad_text_format_schema_is_a_400_naming_it() -> None:
    bad = TextConfig(JSONSchemaTextFormat("x", {"type": "object", "properties": 7}))
    assert error_of(None, None, bad).param == "text.format.schema"


def test_a_forced_call_with_a_json_format_is_constrained_to_the_call() -> None:
    # The Agents SDK sends output_type with tool_choice "required": this turn's
    # output is the call; the format shapes the turns after it.
    text = TextConfig(JSONSchemaTextFormat("x", {"type": "object"}))
    tools = response_tools([WEATHER], "required", text)
    assert tools.setup.mode == "forced"
    assert tools.setup.json_schema is not None and '"arguments"' in tools.setup.json_schema
