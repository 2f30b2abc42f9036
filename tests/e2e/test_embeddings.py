"""POST /v1/embeddings through a real stack, with the official openai SDK.

Its own module-scoped stack (so the session stack is not slowed by these
workers): the real all-MiniLM-L6-v2 from its package, the demo llama as an
LLM-backed embeddings model with Matryoshka widths, and a chat model (whose
weights are missing: only its family matters here).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.e2e.harness import Stack, running_stack
from tests.workers.embeddings_helpers import MINILM
from tests.workers.test_embeddings_reference import RECORDED

EMBEDDER, LLM_EMBEDDER, CHAT = "all-minilm-l6-v2", "llama-embeddings", "a-chat-model"


@pytest.fixture(scope="module")
def embedding_stack(
    demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("embeddings-stack")
    models: list[dict[str, Any]] = [
        {"name": EMBEDDER, "family": "embeddings", "path": MINILM},
        {
            "name": LLM_EMBEDDER,
            "family": "embeddings",
            "path": str(demo_models["demo-llama-tiny"]),
            "options": {"matryoshka_dimensions": [32, 64]},
        },
        {"name": CHAT, "family": "llm", "path": str(tmp / "no-such-model")},  # never loads
    ]
    with running_stack(models, tmp, ready=[EMBEDDER, LLM_EMBEDDER]) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(embedding_stack: Stack) -> Iterator[openai.OpenAI]:
    with embedding_stack.openai_client() as c:
        yield c


def test_the_sdk_default_base64_gives_the_models_real_vectors(client: openai.OpenAI) -> None:
    texts = list(RECORDED)
    reply = client.embeddings.create(model=EMBEDDER, input=texts)  # base64 on the wire
    assert reply.object == "list" and reply.model == EMBEDDER
    assert [d.index for d in reply.data] == [0, 1, 2]
    for data, text in zip(reply.data, texts, strict=True):
        assert data.object == "embedding" and len(data.embedding) == 384
        np.testing.assert_allclose(data.embedding[:8], RECORDED[text], atol=1e-4)
    as_floats = client.embeddings.create(model=EMBEDDER, input=texts, encoding_format="float")
    for a, b in zip(reply.data, as_floats.data, strict=True):
        assert a.embedding == b.embedding  # the same float32 values either way


def test_the_response_has_openais_exact_shape(embedding_stack: Stack) -> None:
    body = {"model": EMBEDDER, "input": "hello world", "encoding_format": "base64"}
    reply = httpx.post(f"{embedding_stack.base_url}/v1/embeddings", json=body, timeout=30)
    assert reply.status_code == 200
    payload = reply.json()
    # OpenAI's keys, then the Phase-4 contract's htdi (docs/phase4-contract.md).
    assert list(payload) == ["object", "data", "model", "usage", "htdi"]
    assert list(payload["data"][0]) == ["object", "index", "embedding"]
    # [CLS] hello world [SEP]
    assert payload["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    vector = np.frombuffer(base64.b64decode(payload["data"][0]["embedding"]), "<f4")
    assert vector.shape == (384,)
    np.testing.assert_allclose(vector[:8], RECORDED["hello world"], atol=1e-4)


def test_related_texts_are_closer_than_unrelated_ones(client: openai.OpenAI) -> None:
    texts = ["A man is eating food.", "A man is eating bread.", "The stock market crashed."]
    reply = client.embeddings.create(model=EMBEDDER, input=texts, encoding_format="float")
    v = np.array([d.embedding for d in reply.data])
    assert v[0] @ v[1] > 0.6 > 0.15 > v[0] @ v[2]
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 8 + 8 + 7


def test_token_ids_embed_like_their_text(client: openai.OpenAI) -> None:
    text = client.embeddings.create(model=EMBEDDER, input="hello world").data[0].embedding
    ids = [101, 7592, 2088, 102]
    one = client.embeddings.create(model=EMBEDDER, input=ids)
    many = client.embeddings.create(model=EMBEDDER, input=[ids, ids[:3]])
    assert len(one.data) == 1 and len(many.data) == 2
    np.testing.assert_allclose(one.data[0].embedding, text, atol=1e-6)
    np.testing.assert_allclose(many.data[0].embedding, text, atol=1e-6)
    assert one.usage.prompt_tokens == 4 and many.usage.prompt_tokens == 7


def test_dimensions_where_the_model_offers_them(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model=LLM_EMBEDDER, input=["hi", "there"], dimensions=64)
    for data in reply.data:
        assert len(data.embedding) == 64
        assert np.linalg.norm(data.embedding) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(openai.BadRequestError, match="only its full width, 384") as err:
        client.embeddings.create(model=EMBEDDER, input="hi", dimensions=128)
    assert err.value.param == "dimensions"


def test_a_model_of_another_family_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="does not serve") as err:
        client.embeddings.create(model=CHAT, input="hi")
    assert err.value.param == "model"
    with pytest.raises(openai.BadRequestError, match="does not serve"):
        client.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    ("bad_input", "param"),
    [("", "input"), ([], "input"), (["ok", ""], "input[1]"), ([[1, 2], []], "input[1]")],
)
def test_empty_input_is_a_400(client: openai.OpenAI, bad_input: object, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=EMBEDDER, input=bad_input)  # type: ignore[arg-type]
    assert err.value.param == param


def test_an_input_over_the_models_maximum_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] has 302 tokens") as err:
        client.embeddings.create(model=EMBEDDER, input=["fine", "word " * 300])
    assert err.value.param == "input[1]"
    assert err.value.code == "context_length_exceeded"
