"""What a language model is shown, and where its reply starts.

A chat job's messages become tokens through the model's own chat template
(tool definitions, assistant tool calls and tool results included, shaped as
mlx-lm's server passes them); a completion job is raw text or token ids.
Reasoning markers (``<think>``/``</think>`` and kin, or configured ones) tell
a reply's reasoning from its answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mlx_lm.generate import TextStateMachine

from protocol.messages import ChatJob, ChatMessage, CompletionJob
from workers.engine import JobError

# How much of the prompt's end shows whether the template opened a reasoning block.
REASONING_LOOKBACK_TOKENS = 64


def prompt_tokens(
    tokenizer: Any, job: ChatJob | CompletionJob, *, model: str, vocab_size: int | None
) -> list[int]:
    """The job's prompt as token ids (JobError for one the model cannot take)."""
    if isinstance(job, ChatJob):
        return chat_tokens(tokenizer, job, model=model)
    if isinstance(job.prompt, str):
        return tokenizer.encode(job.prompt)
    check_token_ids(job.prompt, vocab_size, "prompt token ids")
    return list(job.prompt)


def chat_tokens(tokenizer: Any, job: ChatJob, *, model: str) -> list[int]:
    if not tokenizer.has_chat_template:
        raise JobError(f"model {model!r} has no chat template; use /v1/completions")
    messages = [template_message(m) for m in job.messages]
    extra = {"tools": job.tools} if job.tools else {}
    try:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **extra
        )
    except Exception as exc:  # jinja raises TemplateError, ValueError...
        raise JobError(f"the model's chat template rejected the messages: {exc}") from exc
    return tokenizer.encode(text, add_special_tokens=False)


def check_token_ids(
    ids: Iterable[int], vocab_size: int | None, what: str, param: str | None = None
) -> None:
    """JobError unless every id is in the vocabulary (when its size is known)."""
    if vocab_size is not None and any(not 0 <= t < vocab_size for t in ids):
        raise JobError(f"{what} must be in [0, {vocab_size})", param=param)


def template_message(message: ChatMessage) -> dict[str, Any]:
    """A message as Hugging Face chat templates expect it: tool calls with
    their arguments as an object (as mlx-lm's server passes them), and an
    assistant turn's reasoning as ``reasoning_content`` (what templates that
    render it read; most leave it out of earlier turns)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        if out["content"] is None:
            out["content"] = ""
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.loads(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.reasoning:
        out["reasoning_content"] = message.reasoning
    return out


class ReasoningMarkers:
    """The markers around a reply's reasoning, and mlx-lm's ``TextStateMachine``
    that splits text on them."""

    def __init__(self, start: str, end: str) -> None:
        self.start, self.end = start, end
        self.machine = TextStateMachine(
            {"normal": [(start, "reasoning")], "reasoning": [(end, "normal")]}
        )

    @classmethod
    def configured(
        cls, setting: str | list[str], tokenizer: Any, *, model: str
    ) -> ReasoningMarkers | None:
        """The ``reasoning`` option: "auto" uses the markers mlx-lm finds in the
        tokenizer (None if it has none), "off" none, [start, end] those."""
        if setting == "off":
            return None
        if setting == "auto":
            if not tokenizer.has_thinking:
                return None
            return cls(tokenizer.think_start, tokenizer.think_end)
        if isinstance(setting, list) and len(setting) == 2 and all(setting):
            return cls(setting[0], setting[1])
        raise ValueError(f"model {model!r}: reasoning must be 'auto', 'off' or [start, end]")

    def reply_state(self, tokenizer: Any, prompt: list[int]) -> Any:
        """Where a chat reply to ``prompt`` starts: a template that opens the
        reasoning block itself (the prompt ends inside it) starts the reply in
        reasoning, as mlx-lm's server does."""
        tail = tokenizer.decode(prompt[-REASONING_LOOKBACK_TOKENS:])
        inside = tail.rfind(self.start) > tail.rfind(self.end)
        return self.machine.make_state("reasoning" if inside else "normal")
