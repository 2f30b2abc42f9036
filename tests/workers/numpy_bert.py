"""An independent reference: BERT's forward pass and mean pooling in plain numpy
(float64), written from the architecture, not from workers/engines/bert.py.

It reads the same safetensors file through the ``safetensors`` library's numpy
loader, so it shares nothing with the MLX encoder but the weights and the
tokenizer's ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf


class NumpyBert:
    def __init__(self, folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config["layer_norm_eps"]
        self.w = {
            k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()
        }

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"] + self.w[
            f"{name}.bias"
        ]

    def hidden_states(self, ids: list[int]) -> np.ndarray:
        """Last hidden states (L, H) of one unpadded input."""
        w, n = self.w, len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._linear(x, f"{p}.attention.self.{part}")
                .reshape(n, self.heads, -1)
                .transpose(1, 0, 2)
                for part in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = scores / scores.sum(-1, keepdims=True)
            context = (attention @ v).transpose(1, 0, 2).reshape(n, -1)
            x = self._norm(
                self._linear(context, f"{p}.attention.output.dense") + x,
                f"{p}.attention.output.LayerNorm",
            )
            h = self._linear(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1 + erf(h / np.sqrt(2)))  # exact GELU
            x = self._norm(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x

    def sentence_vector(self, ids: list[int]) -> np.ndarray:
        """Mean-pooled, unit-length: all-MiniLM-L6-v2's modules (Pooling, Normalize)."""
        vector = self.hidden_states(ids).mean(0)
        return vector / np.linalg.norm(vector)


def main() -> None:
    """Print the first 8 dimensions of the reference sentences' vectors (how the
    expected values in test_embeddings_reference.py were recorded)."""
    from tokenizers import Tokenizer

    from tests.workers.embeddings_helpers import MINILM
    from tests.workers.test_embeddings_reference import SENTENCES
    from workers.weights import package_folder

    folder = package_folder(MINILM)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    reference = NumpyBert(folder)
    for sentence in SENTENCES:
        vector = reference.sentence_vector(tokenizer.encode(sentence).ids)
        print(f"{sentence!r}: {[round(float(x), 6) for x in vector[:8]]},")


if __name__ == "__main__":
    main()
