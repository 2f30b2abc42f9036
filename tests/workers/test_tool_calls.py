"""Tool calls in the LLM engine: forced by a grammar ("required" / a named
function), parsed with mlx-lm's tool parser ("auto"), and tool messages and
assistant calls rendered into the demo model's chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from protocol.messages import ChatJob, ChatMessage, Events, SamplingParams, ToolCall
from tests.workers.engine_helpers import load_engine, run_to_end
from workers.engines.llm import LLMEngine
from workers.engines.tools import ToolCallReader, ToolFormat

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 6}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME_PARAMS}},
]
PARAMS = {"get_weather": WEATHER_PARAMS, "get_time": TIME_PARAMS}
HI = [ChatMessage("user", "What is the weather in Paris?")]


def call_schema(*names: str) -> str:
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": n}, "arguments": PARAMS[n]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for n in names
    ]
    return json.dumps(variants[0] if len(variants) == 1 else {"anyOf": variants})


@pytest.fixture(scope="module")
def engine(demo_models: dict[str, Path]) -> LLMEngine:
    return load_engine("demo-qwen2-tiny", demo_models["demo-qwen2-tiny"], context_length=2048)


def whole_calls(pieces: list[ToolCall]) -> list[ToolCall]:
    """The calls streamed pieces make up: a piece whose id came before carries
    more of that call's arguments (the protocol's rule, see Delta.tool_calls)."""
    arguments: dict[str, str] = {}
    names: dict[str, str] = {}
    for piece in pieces:
        names.setdefault(piece.id, piece.name)
        arguments[piece.id] = arguments.get(piece.id, "") + piece.arguments
    return [ToolCall(i, names[i], text) for i, text in arguments.items()]


def outcome(steps: list[Events], job_id: str) -> tuple[str, list[ToolCall], str]:
    text = "".join(d.text for s in steps for d in s.deltas if d.id == job_id)
    calls = [c for s in steps for d in s.deltas if d.id == job_id for c in d.tool_calls]
    (done,) = [f for s in steps for f in s.finished if f.id == job_id]
    return text + done.text, whole_calls(calls + done.tool_calls), done.finish_reason


def forced(seed: int, *names: str) -> SamplingParams:
    return SamplingParams(
        max_tokens=300, temperature=1.0, seed=seed, json_schema=call_schema(*names)
    )


def test_the_demo_template_gets_mlx_lms_json_tools_parser(engine: LLMEngine) -> None:
    assert engine.tokenizer.has_tool_calling
    assert engine.tokenizer.tool_call_start == "<tool_call>"


@pytest.mark.parametrize("names", [("get_weather",), ("get_weather", "get_time")])
def test_forced_calls_validate_against_their_parameters(
    engine: LLMEngine, names: tuple[str, ...]
) -> None:
    for seed in range(6):
        engine.submit(ChatJob(f"f{seed}", HI, forced(seed, *names), TOOLS, "forced"))
        # Two at a time for odd seeds: the batch path as well as solo.
        if seed % 2:
            engine.submit(ChatJob(f"g{seed}", HI, forced(seed + 100, *names), TOOLS, "forced"))
        steps = run_to_end(engine)
        for job in [f"f{seed}"] + ([f"g{seed}"] if seed % 2 else []):
            text, calls, reason = outcome(steps, job)
            assert (text, reason) == ("", "tool_calls")
            (call,) = calls
            assert call.name in names and call.id.startswith("call_")
            jsonschema.validate(json.loads(call.arguments), PARAMS[call.name])


def test_round_trip_renders_calls_and_results(engine: LLMEngine) -> None:
    messages = [
        *HI,
        ChatMessage(
            "assistant",
            None,
            tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "c"}')],
        ),
        ChatMessage("tool", "sunny, 21 C", tool_call_id="call_1"),
    ]
    job = ChatJob("rt", messages, SamplingParams(max_tokens=10, temperature=0), TOOLS, "auto")
    prompt = engine.tokenizer.decode(engine.prompt_tokens(job))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"' in prompt
    assert "<tool_response>\nsunny, 21 C\n</tool_response>" in prompt
    assert '"name": "get_time"' in prompt  # the tools, in the system prompt
    engine.submit(job)
    _, calls, reason = outcome(run_to_end(engine), "rt")
    assert reason in ("stop", "length", "tool_calls")


def test_auto_and_none_run_to_an_end(engine: LLMEngine) -> None:
    for mode in ("auto", "none"):
        params = SamplingParams(max_tokens=30, temperature=1.0, seed=3)
        engine.submit(ChatJob(mode, HI, params, TOOLS, mode))  # type: ignore[arg-type]
        text, calls, reason = outcome(run_to_end(engine), mode)
        assert reason in ("stop", "length", "tool_calls")
        for call in calls:
            assert isinstance(json.loads(call.arguments), dict)


def reader() -> ToolCallReader:
    return ToolCallReader("auto", ToolFormat.named("json_tools"), TOOLS)


def test_auto_reader_takes_calls_out_of_the_text_across_pieces() -> None:
    r = reader()
    text = 'Sure. <tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call> ok'
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    out = "".join(r.feed(p, end=i == len(pieces) - 1) for i, p in enumerate(pieces))
    assert out == "Sure.  ok"
    (call,) = r.take()
    assert (call.name, json.loads(call.arguments)) == ("get_time", {"zone": "UTC"})
    assert r.take() == []


def test_auto_reader_gives_back_what_does_not_parse() -> None:
    r = reader()
    assert r.feed("a <tool_call>{not json", end=True) == "a <tool_call>{not json"
    assert r.calls == []
    assert reader().feed("plain <tool", end=True) == "plain <tool"


def test_forced_reader_cut_short_is_text() -> None:
    r = ToolCallReader("forced", None, TOOLS)
    assert r.feed('{"name": "get_time", "argu', end=True) == '{"name": "get_time", "argu'
    assert r.calls == []


def test_forced_reader_streams_the_arguments_of_the_call_it_names_first() -> None:
    r = ToolCallReader("forced", None, TOOLS)
    text = '{"name": "get_time", "arguments": {"zone": "UTC"}}'
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    taken = []
    for i, piece in enumerate(pieces):
        assert r.feed(piece, end=i == len(pieces) - 1) == ""
        taken.append(r.take())
    head = next(calls for calls in taken if calls)[0]
    assert (head.name, head.arguments) == ("get_time", "")
    parts = [c for calls in taken for c in calls]
    assert len(parts) > 3 and {c.id for c in parts} == {head.id}
    assert "".join(c.arguments for c in parts) == '{"zone": "UTC"}'


def test_forced_reader_cut_after_the_head_keeps_the_partial_call() -> None:
    r = ToolCallReader("forced", None, TOOLS)
    assert r.feed('{"name": "get_time", "arguments": {"zo', end=True) == ""
    (call,) = whole_calls(r.take())
    assert (call.name, call.arguments) == ("get_time", '{"zo')


STRICT_TOOLS = [
    {"type": "function", "function": {**TOOLS[0]["function"], "strict": True}},
    TOOLS[1],  # not strict: any arguments object
]


def accepts(engine: LLMEngine, text: str, tools: list[dict[str, Any]] = STRICT_TOOLS) -> bool:
    """Whether the strict-tools grammar of the demo model takes ``text`` whole."""
    from llguidance import LLMatcher

    from workers.engines.grammar import compile_tool_calls
    from workers.engines.tools import strict_call_schema

    schema = strict_call_schema(tools)
    assert schema is not None
    grammar = compile_tool_calls("<tool_call>", "</tool_call>", schema)
    matcher = LLMatcher(engine._sequences.grammar_tokenizer, grammar, log_level=0)
    ok = matcher.consume_tokens(engine.tokenizer.encode(text, add_special_tokens=False))
    return bool(ok) and matcher.is_accepting()


def call(name: str, arguments: dict[str, Any]) -> str:
    body = json.dumps({"name": name, "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


def test_strict_tools_let_text_and_valid_calls_through_and_nothing_else(
    engine: LLMEngine,
) -> None:
    paris = {"city": "Paris", "unit": "c", "days": 2}
    assert accepts(engine, "Just text, no call.")
    assert accepts(engine, "Let me check. " + call("get_weather", paris))
    assert accepts(engine, call("get_weather", paris) + " and " + call("get_time", {"any": 1}))
    assert not accepts(engine, call("get_weather", {**paris, "days": 99}))  # strict: maximum 7
    assert not accepts(engine, call("get_weather", {"town": "Paris"}))
    assert not accepts(engine, call("get_sky", {}))  # no such tool
    assert not accepts(engine, "<tool_call>\nnot json\n</tool_call>")


def test_a_strict_tool_without_additional_properties_gets_only_its_keys(
    engine: LLMEngine,
) -> None:
    params: dict[str, Any] = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 10}},
        "required": ["city"],
    }
    function = {"name": "get_weather", "parameters": params, "strict": True}
    tools = [{"type": "function", "function": function}]
    assert accepts(engine, call("get_weather", {"city": "Paris"}), tools)
    assert not accepts(engine, call("get_weather", {"city": "Paris", "extra": 1}), tools)
    assert "additionalProperties" not in params  # the job's own tools are left as sent


def test_a_strict_tool_puts_an_auto_job_under_the_grammar(engine: LLMEngine) -> None:
    params = SamplingParams(max_tokens=40, temperature=0)
    engine.submit(ChatJob("strict", HI, params, STRICT_TOOLS, "auto"))
    engine.submit(ChatJob("loose", HI, params, TOOLS, "auto"))
    assert engine._jobs["strict"].grammar is not None and engine._jobs["loose"].grammar is None
    steps = run_to_end(engine)
    for job_id in ("strict", "loose"):
        _, calls, reason = outcome(steps, job_id)
        assert reason in ("stop", "length", "tool_calls")
        for made in calls:
            if made.name == "get_weather":
                jsonschema.validate(json.loads(made.arguments), WEATHER_PARAMS)
