"""One sequence's text pipeline (workers/engines/text_output.py) on the demo
llama's tokenizer: stop strings, the reasoning split, tool calls, logprobs,
and the Delta/Finished it builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.utils import load_tokenizer

from protocol.messages import Delta, Finished, FinishReason
from workers.engines.logprobs import TokenLogprobs
from workers.engines.prompts import ReasoningMarkers
from workers.engines.text_output import Accepted, TextOutput
from workers.engines.tools import ToolCallReader, ToolFormat

VOCAB = 1000


@pytest.fixture(scope="module")
def tokenizer(demo_models: dict[str, Path]) -> Any:
    return load_tokenizer(demo_models["demo-llama-tiny"])


def flat_logprobs() -> mx.array:
    """Every token as likely as the next, but token 7 the likeliest."""
    logits = mx.zeros((VOCAB,)).at[7].add(1.0)
    return logits - mx.logsumexp(logits)


def feed(
    output: TextOutput, tokenizer: Any, text: str, end: FinishReason | None = "length"
) -> tuple[list[Accepted], list[Delta | None]]:
    """``text``'s tokens one by one, a Delta taken after each; the last one
    ends the sequence with ``end`` ("stop": then an EOS token follows)."""
    tokens = tokenizer.encode(text, add_special_tokens=False)
    results, deltas = [], []
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1 and end != "stop"
        results.append(output.accept(token, flat_logprobs(), end if last else None))
        deltas.append(output.delta())
        if results[-1].ended:
            return results, deltas
    if end == "stop":
        (eos,) = tokenizer.eos_token_ids
        results.append(output.accept(eos, flat_logprobs(), "stop"))
    return results, deltas


def new_output(tokenizer: Any, **kwargs: Any) -> TextOutput:
    return TextOutput("j", prompt_tokens=5, detokenizer=tokenizer.detokenizer, **kwargs)


def text_and_end(results: list[Accepted], deltas: list[Delta | None]) -> tuple[str, Finished]:
    (finished,) = [r.finished for r in results if r.finished is not None]
    return "".join(d.text for d in deltas if d is not None) + finished.text, finished


def test_text_streams_as_one_delta_per_take_and_ends_in_finished(tokenizer: Any) -> None:
    output = new_output(tokenizer, cached_tokens=2)
    results, deltas = feed(output, tokenizer, "Hello world, and more.")
    text, finished = text_and_end(results, deltas)
    assert text == "Hello world, and more."
    assert finished.finish_reason == "length" and finished.stop_sequence is None
    assert finished.usage.prompt_tokens == 5 and finished.usage.cached_tokens == 2
    assert finished.usage.completion_tokens == len(results)
    assert all(d is None or d.tokens == 1 for d in deltas)
    assert output.delta() is None  # nothing gained since


def test_the_first_text_is_flagged_once(tokenizer: Any) -> None:
    results, _ = feed(new_output(tokenizer), tokenizer, "Hello world")
    assert [r.first_text for r in results].count(True) == 1


def test_a_stop_string_across_tokens_ends_the_job_without_its_text(tokenizer: Any) -> None:
    """ "the stop" spans three tokens of the demo tokenizer."""
    output = new_output(tokenizer, stop=["the stop"])
    results, deltas = feed(output, tokenizer, "Hello world, the stop is here.", end=None)
    text, finished = text_and_end(results, deltas)
    assert text == "Hello world, "
    assert finished.finish_reason == "stop" and finished.stop_sequence == "the stop"


def test_text_held_back_for_a_stop_string_comes_out_at_the_end(tokenizer: Any) -> None:
    output = new_output(tokenizer, stop=["the stop"])
    text, finished = text_and_end(*feed(output, tokenizer, "Hello world, the st"))
    assert text == "Hello world, the st" and finished.stop_sequence is None


def test_eos_ends_with_stop_and_adds_no_text(tokenizer: Any) -> None:
    results, deltas = feed(new_output(tokenizer), tokenizer, "Hello", end="stop")
    text, finished = text_and_end(results, deltas)
    assert text == "Hello" and finished.finish_reason == "stop"
    assert finished.usage.completion_tokens == len(results)  # the EOS token counts
    assert finished.usage.reasoning_tokens == 0


def test_reasoning_between_markers_comes_apart_and_the_markers_vanish(tokenizer: Any) -> None:
    markers = ReasoningMarkers("<r>", "</r>")
    output = new_output(tokenizer, reasoning=markers.machine.make_state("normal"))
    results, deltas = feed(output, tokenizer, "So <r>thinking</r> answer")
    text, finished = text_and_end(results, deltas)
    reasoning = "".join(d.reasoning for d in deltas if d is not None) + finished.reasoning
    assert (text, reasoning) == ("So  answer", "thinking")
    # The tokens from the one that opens the reasoning to the one that closes it.
    inside = tokenizer.encode("<r>thinking</r>", add_special_tokens=False)
    assert 0 < finished.usage.reasoning_tokens < finished.usage.completion_tokens
    assert finished.usage.reasoning_tokens <= len(inside)


def test_a_reply_can_start_inside_reasoning(tokenizer: Any) -> None:
    markers = ReasoningMarkers("<r>", "</r>")
    prompt = tokenizer.encode("User: hi\nAssistant: <r>", add_special_tokens=False)
    output = new_output(tokenizer, reasoning=markers.reply_state(tokenizer, prompt))
    results, deltas = feed(output, tokenizer, "hm</r>Hi")
    text, finished = text_and_end(results, deltas)
    reasoning = "".join(d.reasoning for d in deltas if d is not None) + finished.reasoning
    assert (text, reasoning) == ("Hi", "hm")


def test_tool_calls_come_out_of_the_answer_and_end_with_tool_calls(tokenizer: Any) -> None:
    tools = ToolCallReader("auto", ToolFormat.named("json_tools"), [])
    output = new_output(tokenizer, tools=tools)
    call = json.dumps({"name": "get_time", "arguments": {"zone": "UTC"}})
    results, deltas = feed(output, tokenizer, f"Sure.<tool_call>{call}</tool_call>", end="stop")
    text, finished = text_and_end(results, deltas)
    calls = [c for d in deltas if d is not None for c in d.tool_calls] + finished.tool_calls
    assert text == "Sure."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_time", {"zone": "UTC"})]
    assert finished.finish_reason == "tool_calls"


def test_logprobs_only_when_asked_with_the_top_alternatives(tokenizer: Any) -> None:
    plain = feed(new_output(tokenizer), tokenizer, "Hello world")
    assert all(d is None or d.logprobs is None for d in plain[1])
    asked = new_output(tokenizer, logprobs=TokenLogprobs(tokenizer), top_logprobs=2)
    results, deltas = feed(asked, tokenizer, "Hello world", end="stop")
    logprobs = [t for d in deltas if d is not None and d.logprobs for t in d.logprobs]
    (finished,) = [r.finished for r in results if r.finished is not None]
    assert finished.logprobs == []  # the EOS token has none
    assert "".join(t.token for t in logprobs) == "Hello world"
    assert all(len(t.top) == 2 and t.top[0].token == tokenizer.decode([7]) for t in logprobs)


def test_an_echoed_prompt_leads_the_first_delta(tokenizer: Any) -> None:
    output = new_output(tokenizer, echo="Once upon")
    output.accept(tokenizer.encode(" a", add_special_tokens=False)[0], flat_logprobs(), None)
    delta = output.delta()
    assert delta is not None and delta.text.startswith("Once upon")


def test_text_decoded_elsewhere_goes_through_the_same_pipeline() -> None:
    """What mlx-vlm's stream_generate hands over: text and token counts."""
    output = TextOutput("v", prompt_tokens=3, stop=["END"])
    assert output.accept_text("Hi E", 2, None).first_text
    assert not output.accept_text("N", 1, None).ended
    end = output.accept_text("D more", 1, None)
    assert end.finished is not None
    assert (end.finished.text, end.finished.finish_reason) == ("Hi ", "stop")
    assert end.finished.usage.completion_tokens == 4
    assert output.delta() is None  # the Finished carried all of it
