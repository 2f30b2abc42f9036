"""Chat completions through the gateway, with the official OpenAI SDK."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import LLAMA, QWEN, THINK_MESSAGES, THINKING

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
]


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_chat_completion_returns_text_and_usage(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=12)
    assert reply.object == "chat.completion"
    assert reply.model == model
    assert reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_chat_stream_has_openai_chunk_shape(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.model == model for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=20, temperature=0
    )
    assert text == whole.choices[0].message.content
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model=QWEN, messages=MESSAGES, max_tokens=4, stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_greedy_output_equals_mlx_lm_generate(
    client: openai.OpenAI, demo_models: dict[str, Path], model: str
) -> None:
    """The gateway routes by `model` and adds nothing: same tokens as mlx-lm itself."""
    from mlx_lm import generate, load

    mlx_model, tokenizer = load(str(demo_models[model]))
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    tokens = tokenizer.encode(prompt, add_special_tokens=False)
    expected = generate(mlx_model, tokenizer, tokens, max_tokens=40)

    reply = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=40, temperature=0
    )
    assert reply.choices[0].message.content == expected


def test_models_differ_so_routing_is_visible(client: openai.OpenAI) -> None:
    def greedy(model: str) -> str:
        reply = client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=16, temperature=0
        )
        return reply.choices[0].message.content or ""

    assert greedy(LLAMA) != greedy(QWEN)
    assert greedy("demo") == greedy(LLAMA)  # alias


def test_stop_string_ends_generation_without_the_stop_text(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=30, temperature=0
    ).choices[0]
    text = full.message.content or ""
    assert len(text) >= 6
    stop = text[3:6]
    cut = client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=30, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.message.content == text[: text.index(stop)]
    assert cut.finish_reason == "stop"


def test_same_seed_same_text(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        reply = client.chat.completions.create(
            model=QWEN, messages=MESSAGES, max_tokens=24, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content or ""

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_cached_tokens_grow_over_a_conversation(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You are a ship's log."}]
    cached = []
    for turn in range(4):
        messages.append({"role": "user", "content": f"Entry {turn}: the wind, the waves."})
        reply = client.chat.completions.create(
            model=QWEN, messages=messages, max_tokens=8, temperature=0
        )
        messages.append({"role": "assistant", "content": reply.choices[0].message.content})
        cached.append(reply.usage.prompt_tokens_details.cached_tokens)
        assert cached[-1] < reply.usage.prompt_tokens
    assert cached[1:] == sorted(cached[1:]) and cached[-1] > cached[1] > 0


def test_reasoning_is_returned_apart_from_the_answer(
    client: openai.OpenAI, thinking_markers: tuple[str, str, str]
) -> None:
    from tests.workers.test_llm_engine import split_reference

    start, end, plain = thinking_markers
    content, reasoning = split_reference(plain, start, end)
    assert reasoning
    reply = client.chat.completions.create(
        model=THINKING, messages=THINK_MESSAGES, max_tokens=40, temperature=0
    )
    message = reply.choices[0].message
    assert message.content == content
    assert message.model_extra["reasoning_content"] == reasoning

    chunks = list(
        client.chat.completions.create(
            model=THINKING, messages=THINK_MESSAGES, max_tokens=40, temperature=0, stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == content
    assert (
        "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == reasoning
    )
