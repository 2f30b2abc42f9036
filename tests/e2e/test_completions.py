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


def test_a_batch_of_prompts_gives_n_choices_per_prompt_in_order(client: openai.OpenAI) -> None:
    prompts = ["The sea", "Once upon a time"]
    kwargs = {"model": LLAMA, "max_tokens": 6, "temperature": 0}
    alone = [client.completions.create(prompt=p, **kwargs) for p in prompts]
    batch = client.completions.create(prompt=prompts, n=2, **kwargs)
    # Prompt i's choices are at i * n + j, as OpenAI orders them.
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert [c.text for c in batch.choices] == [a.choices[0].text for a in alone for _ in (0, 1)]
    assert batch.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    assert batch.usage.completion_tokens == 2 * sum(a.usage.completion_tokens for a in alone)

    ids = client.completions.create(prompt=[[5, 6, 7], [8, 9]], **kwargs, stream=True)
    texts = {0: "", 1: ""}
    for chunk in ids:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert all(texts.values())


@pytest.mark.parametrize("prompt", [[], [[]], ["a", [1, 2]], [1, "a"]])
def test_a_malformed_prompt_is_400(client: openai.OpenAI, prompt: object) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=LLAMA, prompt=prompt, max_tokens=2)  # type: ignore[arg-type]
    assert exc.value.body["param"] == "prompt"
