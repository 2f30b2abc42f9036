"""Legacy text completions through the gateway."""

from __future__ import annotations

import openai
import pytest

from tests.e2e.conftest import LLAMA, QWEN


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_completion_non_streaming(client: openai.OpenAI, model: str) -> None:
    reply = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8)
    assert reply.object == "text_completion"
    assert reply.model == model
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens <= 8


def test_completion_stream_equals_non_stream(client: openai.OpenAI) -> None:
    kwargs = {"model": LLAMA, "prompt": "The sea", "max_tokens": 16, "temperature": 0}
    whole = client.completions.create(**kwargs)
    chunks = list(
        client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completion_accepts_token_ids(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=QWEN, prompt=[5, 6, 7, 8], max_tokens=4)
    assert reply.usage.prompt_tokens == 4


def test_default_max_tokens_is_16_like_openai(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=LLAMA, prompt="A", temperature=0)
    assert reply.usage.completion_tokens <= 16
