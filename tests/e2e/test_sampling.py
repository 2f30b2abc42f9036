"""Sampling and scoring fields, through the OpenAI SDK."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from tests.e2e.conftest import LLAMA, QWEN
from tests.e2e.harness import Stack

MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


def greedy(client: openai.OpenAI, **extra: object) -> openai.types.chat.ChatCompletion:
    kwargs: dict[str, object] = {"max_tokens": 16, **extra}
    return client.chat.completions.create(model=LLAMA, messages=MESSAGES, temperature=0, **kwargs)


def test_chat_logprobs_have_openai_shape(client: openai.OpenAI) -> None:
    reply = greedy(client, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens  # no EOS within 16 greedy tokens
    # A token may hold part of a character: its bytes put the text back together.
    text = b"".join(bytes(t.bytes) for t in content).decode("utf-8", "replace")
    assert text == reply.choices[0].message.content
    for token in content:
        assert token.logprob <= 0
        if not token.token.startswith("bytes:"):
            assert bytes(token.bytes) == token.token.encode()
        assert len(token.top_logprobs) == 3
        scores = [t.logprob for t in token.top_logprobs]
        assert scores == sorted(scores, reverse=True)
        # Greedy: the chosen token is the likeliest.
        assert math.isclose(token.logprob, scores[0], abs_tol=1e-4)


def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    assert greedy(client).choices[0].logprobs is None


def test_streamed_logprobs_cover_every_token(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=QWEN, messages=MESSAGES, max_tokens=12, temperature=0, logprobs=True, stream=True
        )
    )
    tokens = [
        t
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert b"".join(bytes(t.bytes) for t in tokens).decode("utf-8", "replace") == text
    assert len(tokens) == 12


def test_completion_logprobs_are_the_legacy_lists(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=LLAMA, prompt="The sea", max_tokens=8, temperature=0, logprobs=2
    )
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 8
    # mlx-lm's BPE detokenizer drops the first token's leading space from the text.
    assert "".join(logprobs.tokens).removeprefix(" ") == reply.choices[0].text
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)


def test_n_choices_differ_and_reproduce_with_a_seed(client: openai.OpenAI) -> None:
    def ask() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=QWEN, messages=MESSAGES, max_tokens=10, temperature=1.0, seed=11, n=3
        )

    reply = ask()
    texts = [c.message.content for c in reply.choices]
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert [c.message.content for c in ask().choices] == texts
    single = client.chat.completions.create(
        model=QWEN, messages=MESSAGES, max_tokens=10, temperature=1.0, seed=11
    )
    assert single.choices[0].message.content == texts[0]
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens  # counted once
    assert reply.usage.completion_tokens == sum(10 for _ in texts)


def test_n_choices_stream_by_index(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=LLAMA, messages=MESSAGES, max_tokens=6, temperature=0, n=2, stream=True
        )
    )
    texts = ["", ""]
    finishes = [None, None]
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts[0] == texts[1] == greedy(client, max_tokens=6).choices[0].message.content
    assert finishes == ["length", "length"]


def test_logit_bias_forces_a_token(client: openai.OpenAI) -> None:
    reply = greedy(client, logit_bias={"300": 100})
    tokens = {
        t.token
        for t in greedy(client, logit_bias={"300": 100}, logprobs=True).choices[0].logprobs.content
    }
    assert len(tokens) == 1
    assert reply.choices[0].message.content == tokens.pop() * 16


def test_penalties_change_a_repetitive_greedy_output(client: openai.OpenAI) -> None:
    plain = greedy(client).choices[0].message.content
    assert greedy(client, frequency_penalty=2.0).choices[0].message.content != plain
    assert greedy(client, presence_penalty=2.0).choices[0].message.content != plain
    assert (
        greedy(client, extra_body={"repetition_penalty": 3.0}).choices[0].message.content != plain
    )


def test_top_k_1_is_greedy(client: openai.OpenAI) -> None:
    sampled = client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=16, temperature=1.0, extra_body={"top_k": 1}
    )
    assert sampled.choices[0].message.content == greedy(client).choices[0].message.content


def test_echo_prepends_the_prompt(client: openai.OpenAI) -> None:
    plain = client.completions.create(model=LLAMA, prompt="The sea", max_tokens=5, temperature=0)
    echoed = client.completions.create(
        model=LLAMA, prompt="The sea", max_tokens=5, temperature=0, echo=True
    )
    assert echoed.choices[0].text == "The sea" + plain.choices[0].text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"echo": True, "logprobs": 1}, "echo"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 50}, "logprobs"),
    ],
)
def test_unsupported_completion_fields_are_400_naming_them(
    stack: Stack, extra: dict[str, object], param: str
) -> None:
    body = {"model": LLAMA, "prompt": "x", "max_tokens": 2, **extra}
    r = httpx.post(f"{stack.base_url}/v1/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_unknown_fields_are_ignored_like_openai_sdks_extras(stack: Stack) -> None:
    body = {
        "model": LLAMA,
        "messages": MESSAGES,
        "max_tokens": 2,
        "parallel_tool_calls": False,
        "x": 1,
    }
    assert httpx.post(f"{stack.base_url}/v1/chat/completions", json=body).status_code == 200
