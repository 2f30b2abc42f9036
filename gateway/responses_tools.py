"""A Responses request's ``tools``, ``tool_choice`` and ``text.format``, as a job carries them.

Function tools, and the function tools a ``namespace`` tool groups (callable
by their own names; their calls say the namespace), are checked and decided
exactly as chat's ``tools`` are (:func:`gateway.generation.tool_setup`), with
400s naming the Responses fields. OpenAI's built-in tools (``web_search``,
``file_search``, ``code_interpreter``...) are tools this gateway cannot run:
they are left out of the prompt and out of the Response's ``tools`` echo
(which lists what the model was given) rather than refused, so a client that
always sends them (Codex CLI sends ``web_search``) still works. Any other
tool type is a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import APIError
from gateway.generation import ToolSetup, check_json_schema, tool_setup
from gateway.openai_schemas import (
    ChatCompletionRequest,
    FunctionDef,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaResponseFormat,
    NamedFunction,
    NamedToolChoice,
    ResponseFormat,
    ToolDef,
)
from gateway.responses_input import convert
from gateway.responses_objects import (
    AllowedToolsChoice,
    FunctionTool,
    FunctionToolChoice,
    JSONSchemaFormatOut,
    TextFormatOut,
    TextOut,
    ToolChoice,
)
from gateway.responses_schemas import (
    FunctionToolIn,
    JSONObjectTextFormat,
    JSONSchemaTextFormat,
    NamespaceToolIn,
    TextConfig,
    TextTextFormat,
)

# OpenAI's built-in (hosted) tools: the gateway runs none of them.
BUILTIN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "web_search_2025_08_26",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer",
        "computer_use",
        "computer_use_preview",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
    }
)


@dataclass
class ResponseTools:
    """What the job needs (``setup``) and what the Response echoes."""

    setup: ToolSetup
    tools: list[FunctionTool]
    choice: ToolChoice
    # The output's JSON schema (text.format json_object / json_schema).
    text_schema: str | None
    text: TextOut
    # A function's namespace tool, by function name.
    namespaces: dict[str, str] = field(default_factory=dict)
    # Built-in tools left out of the prompt (their types).
    left_out: list[str] = field(default_factory=list)


@dataclass
class _Function:
    tool: FunctionToolIn
    param: str
    namespace: str | None


def response_tools(
    tools: list[Any] | None, choice: str | dict[str, Any] | None, text: TextConfig | None
) -> ResponseTools:
    functions, left_out = _functions(tools or [])
    named, allowed, mode = _choice(choice, functions)
    if allowed is not None:
        functions = [f for f in functions if f.tool.name in allowed]
    text_format = text.format if text is not None else None
    chat_format: ResponseFormat | None = None
    if isinstance(text_format, JSONObjectTextFormat):
        chat_format = JSONObjectFormat()
    elif isinstance(text_format, JSONSchemaTextFormat):
        chat_format = JSONSchemaResponseFormat(JSONSchemaFormat(text_format.name))
    as_chat = ChatCompletionRequest(
        "",
        [],
        tools=[
            ToolDef(
                "function",
                FunctionDef(f.tool.name, f.tool.description, f.tool.parameters, f.tool.strict),
            )
            for f in functions
        ]
        or None,
        tool_choice=NamedToolChoice("function", NamedFunction(named)) if named else mode,
        # A forced call's output is the call itself: text.format shapes the
        # text of a later turn (the Agents SDK sends both, then drops the
        # forced choice once its tool has run), so it does not apply here.
        response_format=None if named or mode == "required" else chat_format,
    )
    try:
        setup = tool_setup(as_chat)
    except APIError as exc:
        raise _renamed(exc, functions) from None
    echo = [
        FunctionTool(f.tool.name, f.tool.description, f.tool.parameters, f.tool.strict)
        for f in functions
    ]
    echo_choice: ToolChoice
    if named:
        echo_choice = FunctionToolChoice(named)
    elif allowed is not None:
        names = [FunctionToolChoice(f.tool.name) for f in functions]
        echo_choice = AllowedToolsChoice("required" if mode == "required" else "auto", names)
    else:
        echo_choice = mode  # type: ignore[assignment]
    schema, format_out = _text_format(text_format)
    verbosity = text.verbosity if text is not None and text.verbosity else "medium"
    return ResponseTools(
        setup=setup,
        tools=echo,
        choice=echo_choice,
        text_schema=schema,
        text=TextOut(format_out, verbosity),
        namespaces={f.tool.name: f.namespace for f in functions if f.namespace},
        left_out=left_out,
    )


def _functions(tools: list[Any]) -> tuple[list[_Function], list[str]]:
    functions: list[_Function] = []
    left_out: list[str] = []
    for i, raw in enumerate(tools):
        param = f"tools[{i}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "function":
            functions.append(_Function(convert(raw, FunctionToolIn, param), param, None))
        elif kind == "namespace":
            space = convert(raw, NamespaceToolIn, param)
            for j, inner in enumerate(space.tools):
                where = f"{param}.tools[{j}]"
                inner_kind = inner.get("type") if isinstance(inner, dict) else None
                if inner_kind != "function":
                    raise APIError(
                        400,
                        f"a namespace's tools must be function tools on this server, "
                        f"not {inner_kind!r}",
                        param=f"{where}.type",
                    )
                functions.append(
                    _Function(convert(inner, FunctionToolIn, where), where, space.name)
                )
        elif kind in BUILTIN_TOOLS:
            left_out.append(str(kind))
        elif kind == "custom":
            raise APIError(
                400,
                "custom (free-form) tools are not supported by this server; use function tools",
                param=f"{param}.type",
            )
        else:
            raise APIError(
                400,
                f"unknown tool type {kind!r}: this server takes function and namespace tools "
                f"(built-in tools such as web_search are left out)",
                param=f"{param}.type",
            )
    return functions, left_out


def _choice(
    choice: str | dict[str, Any] | None, functions: list[_Function]
) -> tuple[str | None, set[str] | None, str]:
    """(a forced function's name, the allowed names, the mode) of ``tool_choice``."""
    if choice is None or isinstance(choice, str) and choice in ("auto", "none", "required"):
        return None, None, choice or "auto"
    if isinstance(choice, str):
        raise APIError(
            400,
            f"'tool_choice' must be 'none', 'auto', 'required' or an object, not {choice!r}",
            param="tool_choice",
        )
    kind = choice.get("type")
    if kind == "function":
        return convert(choice, FunctionToolChoice, "tool_choice").name, None, "required"
    if kind == "allowed_tools":
        allowed = convert(choice, AllowedToolsChoice, "tool_choice")
        names = {f.tool.name for f in functions}
        for j, tool in enumerate(allowed.tools):
            if tool.name not in names:
                raise APIError(
                    400,
                    f"'tool_choice' allows {tool.name!r}, which is not in 'tools'",
                    param=f"tool_choice.tools[{j}]",
                )
        return None, {t.name for t in allowed.tools}, allowed.mode
    if kind in BUILTIN_TOOLS:
        raise APIError(
            400, f"this server cannot run the built-in tool {kind!r}", param="tool_choice"
        )
    raise APIError(
        400,
        "'tool_choice' must be 'none', 'auto', 'required', {'type': 'function', 'name': ...} "
        f"or {{'type': 'allowed_tools', ...}}, not type {kind!r}",
        param="tool_choice",
    )


def _text_format(text_format: Any) -> tuple[str | None, TextFormatOut]:
    if isinstance(text_format, JSONObjectTextFormat):
        return '{"type": "object"}', text_format
    if isinstance(text_format, JSONSchemaTextFormat):
        schema = text_format.schema if text_format.schema is not None else {}
        encoded = msgspec.json.encode(schema).decode()
        check_json_schema(encoded, "text.format.schema")
        out = JSONSchemaFormatOut(
            text_format.name,
            text_format.description,
            text_format.schema,
            bool(text_format.strict),
        )
        return encoded, out
    return None, TextTextFormat()


def _renamed(exc: APIError, functions: list[_Function]) -> APIError:
    """Chat's error, with chat's field names turned into the Responses ones."""
    message, param = exc.message, exc.param
    for k, f in enumerate(functions):
        for old, new in ((".function.parameters", ".parameters"), (".function.name", ".name")):
            message = message.replace(f"tools[{k}]{old}", f"{f.param}{new}")
            if param == f"tools[{k}]{old}":
                param = f"{f.param}{new}"
    message = message.replace("'response_format'", "'text.format'")
    if param == "response_format":
        param = "text.format"
    return APIError(exc.status, message, param=param, code=exc.code)
