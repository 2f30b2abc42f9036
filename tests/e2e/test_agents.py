"""Real agent clients against /v1/responses of a running gateway, each as its
own docs say to use it: Codex CLI (`codex exec`), the OpenAI Agents SDK's
default Responses model and the Vercel AI SDK's @ai-sdk/openai provider (the
official SDKs' Responses API: tests/e2e/test_responses.py). The demo models'
text is gibberish: these tests check the protocol (turns complete, tools are
called and their results go back), not what the model says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tests.e2e.conftest import LLAMA
from tests.e2e.harness import JS, Stack, node_script, running_stack

# Long context (Codex's first prompt is ~20k tokens) and answers that end by
# themselves (Codex and the Agents SDK fail a turn cut at max tokens).
LONG = "demo-llama-long"


@pytest.fixture(scope="module")
def agent_stack(
    demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    entries: list[dict[str, Any]] = [
        {"name": name, "family": "llm", "path": str(demo_models[name]), "demo": True}
        for name in (LLAMA, LONG)
    ]
    with running_stack(entries, tmp_path_factory.mktemp("agents")) as stack:
        yield stack


# --- Codex CLI -------------------------------------------------------------------


def codex_config(base_url: str, model: str) -> str:
    """$CODEX_HOME/config.toml for the gateway, as docs/agents.md has it."""
    return (
        f'model = "{model}"\n'
        'model_provider = "mlx-gateway"\n'
        "\n"
        "[model_providers.mlx-gateway]\n"
        'name = "mlx-gateway"\n'
        f'base_url = "{base_url}/v1"\n'
        'wire_api = "responses"\n'
    )


def codex_exec(home: Path, workdir: Path, *args: str) -> list[dict[str, Any]]:
    """`codex exec --json ARGS` in workdir; its JSONL events, after checking it exited 0."""
    codex = JS / "node_modules" / ".bin" / "codex"
    if shutil.which("node") is None or not codex.exists():
        pytest.fail("Node.js and tests/js/node_modules are needed (run scripts/setup.sh)")
    done = subprocess.run(
        [str(codex), "exec", "--json", "--skip-git-repo-check", *args],
        cwd=workdir,
        env=dict(os.environ, CODEX_HOME=str(home)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def errors(events: list[dict[str, Any]]) -> list[str]:
    """Error events and items, but the warning that Codex has no metadata (context
    window, reasoning efforts) for a model name it does not know, which is every
    local model's."""
    found = [e.get("message", str(e)) for e in events if e["type"] in ("error", "turn.failed")]
    for event in events:
        item = event.get("item") or {}
        if item.get("type") == "error" and "Model metadata" not in item.get("message", ""):
            found.append(item["message"])
    return found


def usage(events: list[dict[str, Any]]) -> dict[str, int]:
    [completed] = [e for e in events if e["type"] == "turn.completed"]
    return completed["usage"]


@pytest.mark.timeout(900)
def test_codex_exec_completes_turns_against_the_gateway(agent_stack: Stack, tmp_path: Path) -> None:
    home, workdir = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    (home / "config.toml").write_text(codex_config(agent_stack.base_url, LONG))

    first = codex_exec(home, workdir, "Say hello.")
    assert errors(first) == []
    # Codex's own instructions and tools: ten times a 2,048-token context.
    assert usage(first)["input_tokens"] > 8 * 2048

    # The next turn sends the whole conversation again (store: false); the
    # worker's prefix cache makes its prefill incremental. (Codex's usage
    # counts the whole session.)
    second = codex_exec(home, workdir, "resume", "--last", "Say it again.")
    assert errors(second) == []
    cached = usage(second)["cached_input_tokens"] - usage(first)["cached_input_tokens"]
    assert cached >= usage(first)["input_tokens"] - 1


# --- The OpenAI Agents SDK --------------------------------------------------------


def agents_run_config(stack: Stack) -> Any:
    """The Agents SDK's default (Responses) model provider, pointed at the gateway."""
    from agents import RunConfig
    from agents.models.openai_provider import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{stack.base_url}/v1", api_key="unused")
    return RunConfig(model_provider=provider, tracing_disabled=True)


def weather_tool(calls: list[str]) -> Any:
    from agents import function_tool

    # An enum, so that the random model's constrained call ends.
    @function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    return get_weather


def assert_called_then_answered(result: Any, calls: list[str]) -> None:
    assert len(calls) == 1
    assert [item.type for item in result.new_items] == [
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]
    assert result.new_items[1].output == f"Sunny in {calls[0]}"
    # The tool's result went back to the model in the second request.
    sent = result.to_input_list()
    assert sent[2]["type"] == "function_call_output"
    assert sent[2]["output"] == f"Sunny in {calls[0]}"


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_the_agents_sdk_calls_a_function_tool_and_answers_with_its_result(
    agent_stack: Stack, streamed: bool
) -> None:
    from agents import Agent, ModelSettings, Runner

    calls: list[str] = []
    # tool_choice "required" makes the random model call the tool (constrained
    # decoding); the SDK then resets it to "auto" for the answer, which ends by
    # itself (the long model leans to EOS): a cut answer fails the run.
    agent = Agent(
        name="forecaster",
        instructions="Look the weather up, then answer.",
        model=LONG,
        tools=[weather_tool(calls)],
        model_settings=ModelSettings(tool_choice="required", temperature=0),
    )
    config = agents_run_config(agent_stack)
    if streamed:
        run = Runner.run_streamed(agent, "Weather in Paris?", run_config=config)
        events = [event.type async for event in run.stream_events()]
        assert "raw_response_event" in events
        result: Any = run
    else:
        result = await Runner.run(agent, "Weather in Paris?", run_config=config)

    assert_called_then_answered(result, calls)
    assert isinstance(result.final_output, str) and result.final_output


class Forecast(BaseModel):
    sky: Literal["sunny", "rainy"]


async def test_the_agents_sdk_answers_with_its_output_type_after_a_forced_tool_call(
    agent_stack: Stack,
) -> None:
    from agents import Agent, ModelSettings, Runner

    calls: list[str] = []
    # Both requests carry text.format (the output type's JSON schema); the
    # first also forces the tool, whose call is not text.
    agent = Agent(
        name="forecaster",
        instructions="Look the weather up, then answer.",
        model=LLAMA,
        tools=[weather_tool(calls)],
        output_type=Forecast,
        model_settings=ModelSettings(tool_choice="required", temperature=0),
    )
    result = await Runner.run(agent, "Weather in Paris?", run_config=agents_run_config(agent_stack))

    assert_called_then_answered(result, calls)
    assert isinstance(result.final_output, Forecast)


# --- The Vercel AI SDK (Node.js) -------------------------------------------------


def ai_sdk(stack: Stack, scenario: str) -> dict[str, Any]:
    return node_script("ai_sdk.mjs", f"{stack.base_url}/v1", LLAMA, scenario, timeout=300)


def test_the_ai_sdk_generates_and_streams_text(agent_stack: Stack) -> None:
    seen = ai_sdk(agent_stack, "text")
    assert seen["responseId"].startswith("resp")
    assert seen["finishReason"] in ("stop", "length")
    assert seen["usage"]["outputTokens"] >= 1
    # Greedy: the streamed text is the generated text.
    assert seen["streamed"] == seen["text"]
    assert seen["streamedFinishReason"] == seen["finishReason"]


def test_the_ai_sdk_goes_on_from_a_stored_answer(agent_stack: Stack) -> None:
    seen = ai_sdk(agent_stack, "conversation")
    assert seen["first"] in ("stop", "length") and seen["second"] in ("stop", "length")


def test_the_ai_sdk_calls_a_tool_and_sends_its_result_back(agent_stack: Stack) -> None:
    seen = ai_sdk(agent_stack, "tools")
    for call, answer in (seen["generated"], seen["streamed"]):
        assert call["finishReason"] == "tool-calls"
        [made] = call["toolCalls"]
        assert made["name"] == "get_weather" and made["input"]["city"] in ("Paris", "Rome")
        assert call["toolResults"] == [f"Sunny in {made['input']['city']}"]
        assert answer["toolCalls"] == [] and answer["finishReason"] in ("stop", "length")
    assert len(seen["calls"]) == 2
    assert {"tool-call", "tool-result", "text-delta", "finish"} <= set(seen["streamedParts"])
