"""What a language model is shown (workers/engines/prompts.py), on the demo
llama's tokenizer: prompts as tokens, messages as templates take them, and
the reasoning markers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.utils import load_tokenizer

from protocol.messages import ChatJob, ChatMessage, CompletionJob, SamplingParams, ToolCall
from workers.engine import JobError
from workers.engines.prompts import ReasoningMarkers, prompt_tokens, template_message

VOCAB = 1000


@pytest.fixture(scope="module")
def tokenizer(demo_models: dict[str, Path]) -> Any:
    return load_tokenizer(demo_models["demo-llama-tiny"])


def tokens_of(tokenizer: Any, job: ChatJob | CompletionJob) -> list[int]:
    return prompt_tokens(tokenizer, job, model="demo", vocab_size=VOCAB)


def test_a_chat_goes_through_the_models_own_template(tokenizer: Any) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "hi")]
    tokens = tokens_of(tokenizer, ChatJob("c", messages, SamplingParams()))
    expected = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert tokenizer.decode(tokens) == expected


def test_a_completion_prompt_is_its_text_or_its_token_ids(tokenizer: Any) -> None:
    text = tokens_of(tokenizer, CompletionJob("t", "Once upon", SamplingParams()))
    assert text == tokenizer.encode("Once upon")
    assert tokens_of(tokenizer, CompletionJob("i", [5, 6, 7], SamplingParams())) == [5, 6, 7]


def test_token_ids_outside_the_vocabulary_are_refused(tokenizer: Any) -> None:
    with pytest.raises(JobError, match=r"prompt token ids must be in \[0, 1000\)"):
        tokens_of(tokenizer, CompletionJob("i", [5, VOCAB], SamplingParams()))


def test_a_model_without_a_chat_template_says_to_use_completions(tokenizer: Any) -> None:
    class NoTemplate:
        has_chat_template = False

    with pytest.raises(JobError, match="no chat template; use /v1/completions"):
        prompt_tokens(NoTemplate(), ChatJob("c", [], SamplingParams()), model="x", vocab_size=None)


def test_tool_calls_reach_the_template_with_their_arguments_as_objects() -> None:
    call = ToolCall("call_1", "get_time", json.dumps({"zone": "UTC"}))
    assistant = template_message(ChatMessage("assistant", None, tool_calls=[call]))
    assert assistant == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_time", "arguments": {"zone": "UTC"}},
            }
        ],
    }
    result = template_message(ChatMessage("tool", "12:00", tool_call_id="call_1"))
    assert result == {"role": "tool", "content": "12:00", "tool_call_id": "call_1"}


def test_a_message_reasoning_reaches_the_template_as_reasoning_content() -> None:
    message = ChatMessage("assistant", "42", reasoning="6 times 7")
    assert template_message(message)["reasoning_content"] == "6 times 7"
    assert "reasoning_content" not in template_message(ChatMessage("assistant", "42"))


def test_reasoning_markers_are_configured_or_found_or_off(tokenizer: Any) -> None:
    assert ReasoningMarkers.configured("off", tokenizer, model="demo") is None
    assert ReasoningMarkers.configured("auto", tokenizer, model="demo") is None  # it has none
    named = ReasoningMarkers.configured(["<r>", "</r>"], tokenizer, model="demo")
    assert named is not None and (named.start, named.end) == ("<r>", "</r>")
    with pytest.raises(ValueError, match="'demo': reasoning must be"):
        ReasoningMarkers.configured(["<r>"], tokenizer, model="demo")


def test_a_reply_starts_in_reasoning_when_the_prompt_opened_it(tokenizer: Any) -> None:
    markers = ReasoningMarkers("<r>", "</r>")
    opened = tokenizer.encode("Assistant: <r>", add_special_tokens=False)
    closed = tokenizer.encode("Assistant: <r>no</r>", add_special_tokens=False)
    machine = markers.machine
    assert markers.reply_state(tokenizer, opened) == machine.make_state("reasoning")
    assert markers.reply_state(tokenizer, closed) == machine.make_state("normal")
