"""The embeddings engine in-process: batching, limits, dimensions, cancel, and
the LLM backend on the demo llama (hidden states, mean-pooled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protocol.config import ModelConfig
from protocol.messages import ChatJob, ChatMessage, EmbeddingJob, SamplingParams
from tests.workers.embeddings_helpers import embed, load_engine, run_to_end, vectors_of
from workers.engine import JobError
from workers.engines.embeddings import EmbeddingsEngine

TEXTS = ["A man is eating food.", "Hi.", "The stock market crashed today after a long rally."]
LONG = "word " * 300  # > all-MiniLM-L6-v2's 256 tokens


@pytest.fixture(scope="module")
def bert() -> EmbeddingsEngine:
    return load_engine(max_batch_tokens=64, matryoshka_dimensions=[64, 128])


@pytest.fixture(scope="module")
def llm(demo_models: dict[str, Path]) -> EmbeddingsEngine:
    return load_engine(demo_models["demo-llama-tiny"])


def test_a_batch_gives_each_input_the_vector_it_gets_alone(bert: EmbeddingsEngine) -> None:
    together = embed(bert, list(TEXTS))
    alone = np.concatenate([embed(bert, [t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_jobs_share_forward_passes_within_the_token_budget(bert: EmbeddingsEngine) -> None:
    # 12 inputs of 8 tokens; the budget (64 padded tokens) takes 8 per pass.
    bert.submit(EmbeddingJob("a", ["A man is eating food."] * 5))
    bert.submit(EmbeddingJob("b", ["A man is eating food."] * 7))
    steps = run_to_end(bert)
    # The first pass takes all of "a" and 3 of "b"; the second the rest of "b".
    assert [[f.id for f in s.finished] for s in steps] == [["a"], ["b"]]
    assert [f.usage.prompt_tokens for s in steps for f in s.finished] == [40, 56]
    np.testing.assert_allclose(vectors_of(steps, "a")[0], vectors_of(steps, "b")[6], atol=1e-5)


def test_token_ids_embed_like_their_text(bert: EmbeddingsEngine) -> None:
    ids = bert.encoder.tokenize([TEXTS[0]], truncate=False)[0]
    np.testing.assert_allclose(embed(bert, [ids]), embed(bert, [TEXTS[0]]), atol=1e-6)


def test_an_input_over_the_model_maximum_is_refused_naming_its_index(
    bert: EmbeddingsEngine,
) -> None:
    with pytest.raises(JobError, match=r"input\[1\] has \d+ tokens.*maximum of 256") as caught:
        bert.submit(EmbeddingJob("long", ["short", LONG]))
    assert caught.value.param == "input[1]"
    assert not bert.has_work()


def test_the_truncate_option_cuts_long_inputs_keeping_the_closing_sep() -> None:
    engine = load_engine(truncate=True, max_input_tokens=16)
    ids = engine.encoder.tokenize([LONG], truncate=True)[0]
    assert len(ids) == 16 and ids[-1] == 102  # [SEP]
    engine.submit(EmbeddingJob("t", [LONG, list(range(1000, 1030))]))
    (done,) = [f for s in run_to_end(engine) for f in s.finished]
    assert done.usage.prompt_tokens == 32


def test_token_ids_outside_the_vocabulary_are_refused(bert: EmbeddingsEngine) -> None:
    with pytest.raises(JobError, match="outside this model's vocabulary") as caught:
        bert.submit(EmbeddingJob("v", [[101, 30522, 102]]))
    assert caught.value.param == "input[0]"


def test_matryoshka_dimensions_cut_and_renormalise(bert: EmbeddingsEngine) -> None:
    full = embed(bert, [TEXTS[0]])[0]
    cut = embed(bert, [TEXTS[0]], dimensions=64)[0]
    assert cut.shape == (64,)
    np.testing.assert_allclose(cut, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)
    assert embed(bert, [TEXTS[0]], dimensions=384).shape == (1, 384)


def test_dimensions_the_model_does_not_offer_are_refused(bert: EmbeddingsEngine) -> None:
    with pytest.raises(JobError, match=r"one of \[64, 128, 384\]") as caught:
        bert.submit(EmbeddingJob("d", ["x"], dimensions=100))
    assert caught.value.param == "dimensions"


def test_without_matryoshka_only_the_full_width_is_offered(llm: EmbeddingsEngine) -> None:
    with pytest.raises(JobError, match="only its full width, 128"):
        llm.submit(EmbeddingJob("d", ["x"], dimensions=64))


def test_a_cancelled_job_leaves_no_work_and_others_finish(bert: EmbeddingsEngine) -> None:
    bert.submit(EmbeddingJob("gone", list(TEXTS) * 4))
    bert.submit(EmbeddingJob("kept", [TEXTS[1]]))
    assert bert.cancel("gone") and not bert.cancel("gone")
    steps = run_to_end(bert)
    assert [f.id for s in steps for f in s.finished] == ["kept"]


def test_text_jobs_are_refused(bert: EmbeddingsEngine) -> None:
    job = ChatJob("c", [ChatMessage("user", "hi")], SamplingParams())
    with pytest.raises(JobError, match="use /v1/embeddings"):
        bert.submit(job)


def test_a_missing_package_fails_to_load_naming_it() -> None:
    config = ModelConfig(
        name="x", family="embeddings", path="pkg:no_such_package/model", endpoint="inproc://x"
    )
    with pytest.raises(FileNotFoundError, match="no installed Python package 'no_such_package'"):
        EmbeddingsEngine(config).load()


# --- the LLM backend: an mlx-lm model's mean-pooled hidden states ---------------


def test_llm_vectors_are_unit_length_with_the_hidden_width(llm: EmbeddingsEngine) -> None:
    assert llm.backend == "llm"
    vectors = embed(llm, list(TEXTS))
    assert vectors.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_llm_vectors_are_deterministic_and_batch_independent(llm: EmbeddingsEngine) -> None:
    first = embed(llm, list(TEXTS))
    np.testing.assert_array_equal(first, embed(llm, list(TEXTS)))
    alone = np.concatenate([embed(llm, [t]) for t in TEXTS])
    np.testing.assert_allclose(first, alone, atol=1e-5)
    assert abs(float(first[0] @ first[2])) < 0.999  # different texts, different vectors


def test_llm_vectors_are_the_mean_of_mlx_lm_hidden_states(
    llm: EmbeddingsEngine, demo_models: dict[str, Path]
) -> None:
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(demo_models["demo-llama-tiny"]))[:2]
    ids = tokenizer.encode(TEXTS[0])
    hidden = np.array(model.model(mx.array([ids]))[0].astype(mx.float32))
    expected = hidden.mean(0) / np.linalg.norm(hidden.mean(0))
    np.testing.assert_allclose(embed(llm, [TEXTS[0]])[0], expected, atol=1e-5)


def test_last_token_pooling_is_an_option(demo_models: dict[str, Path]) -> None:
    engine = load_engine(demo_models["demo-llama-tiny"], pooling="last", normalize=False)
    import mlx.core as mx

    ids = engine.encoder.tokenize([TEXTS[0]], truncate=False)[0]
    hidden = engine.encoder.hidden_states(mx.array([ids]), mx.array([len(ids)]))
    last = np.array(hidden[0, -1].astype(mx.float32))
    np.testing.assert_allclose(embed(engine, [TEXTS[0], TEXTS[2]])[0], last, atol=1e-5)
