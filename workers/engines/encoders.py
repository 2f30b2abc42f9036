"""What turns token ids into sentence vectors: an encoder and its pooling.

Two backends behind one small interface (:class:`Encoder`):

- ``bert``: the MLX BERT in :mod:`workers.engines.bert`, with the model
  folder's fast tokenizer (``tokenizer.json``);
- ``llm``: an mlx-lm language model's last hidden states
  (``model.model(ids)``, after its final norm), with its own tokenizer.

How vectors are pooled comes from the folder's sentence-transformers files,
as sentence-transformers reads them: ``modules.json`` lists the modules
(a ``Normalize`` module means unit vectors) and the ``Pooling`` module's
``config.json`` says mean, CLS or last-token pooling. Config options override.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import mlx.core as mx
import numpy as np

Pooling = Literal["mean", "cls", "last"]

# sentence-transformers' Pooling config keys, in the order it checks them.
_POOLING_KEYS: tuple[tuple[str, Pooling], ...] = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_lasttoken", "last"),
    ("pooling_mode_mean_tokens", "mean"),
)


@dataclass(frozen=True)
class PoolingConfig:
    mode: Pooling = "mean"
    normalize: bool = True


def read_pooling(folder: Path) -> PoolingConfig | None:
    """The folder's sentence-transformers pooling, or None if it has none."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text())
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    mode: Pooling = "mean"
    for module in modules:
        if str(module.get("type", "")).endswith(".Pooling"):
            config = json.loads((folder / module.get("path", "") / "config.json").read_text())
            enabled = [m for key, m in _POOLING_KEYS if config.get(key)]
            if not enabled:
                raise ValueError(f"{folder}: unsupported pooling {config}")
            mode = enabled[0]
    return PoolingConfig(mode, normalize)


def max_seq_length(folder: Path) -> int | None:
    """sentence-transformers' own input limit (``sentence_bert_config.json``)."""
    file = folder / "sentence_bert_config.json"
    if file.is_file():
        value = json.loads(file.read_text()).get("max_seq_length")
        return int(value) if value else None
    return None


def pool(hidden: mx.array, lengths: mx.array, how: PoolingConfig) -> np.ndarray:
    """Sentence vectors (B, H) float32 from right-padded hidden states (B, L, H)."""
    hidden = hidden.astype(mx.float32)
    if how.mode == "cls":
        vectors = hidden[:, 0]
    elif how.mode == "last":
        vectors = hidden[mx.arange(hidden.shape[0]), lengths - 1]
    else:
        mask = (mx.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(mx.float32)
        vectors = (hidden * mask[..., None]).sum(axis=1) / lengths[:, None].astype(mx.float32)
    if how.normalize:
        norms = mx.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / mx.maximum(norms, 1e-12)
    return np.array(vectors)


class Encoder(Protocol):
    """A model that gives the hidden states of a batch of token id lists."""

    width: int  # the hidden size: the vectors' dimensions
    vocab_size: int
    max_tokens: int  # the longest input it takes
    pooling: PoolingConfig

    def tokenize(self, texts: list[str], truncate: bool) -> list[list[int]]: ...

    def hidden_states(self, ids: mx.array, lengths: mx.array) -> mx.array:
        """(B, L, H) for right-padded ``ids`` (B, L) holding ``lengths`` real tokens."""
        ...


class BertEncoder:
    def __init__(self, folder: Path, pooling: PoolingConfig | None, max_tokens: int | None):
        from tokenizers import Tokenizer

        from workers.engines.bert import load_bert

        self.model = load_bert(folder)
        config = self.model.config
        self.width, self.vocab_size = config.hidden_size, config.vocab_size
        self.max_tokens = min(
            max_tokens or max_seq_length(folder) or config.max_position_embeddings,
            config.max_position_embeddings,
        )
        self.pooling = pooling or read_pooling(folder) or PoolingConfig("mean", True)
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json (a fast tokenizer)")
        self.tokenizer = Tokenizer.from_file(str(file))
        # A tokenizer.json may carry the padding/truncation it was saved with
        # (all-MiniLM-L6-v2's pads everything to 128): batches are padded here.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._truncating = Tokenizer.from_str(self.tokenizer.to_str())
        self._truncating.enable_truncation(self.max_tokens)

    def tokenize(self, texts: list[str], truncate: bool) -> list[list[int]]:
        # Truncation by the tokenizer keeps the closing [SEP].
        tokenizer = self._truncating if truncate else self.tokenizer
        return [e.ids for e in tokenizer.encode_batch(texts)]

    def hidden_states(self, ids: mx.array, lengths: mx.array) -> mx.array:
        mask = mx.arange(ids.shape[1])[None, :] < lengths[:, None]
        return self.model(ids, mask)


class LLMEncoder:
    """A language model's hidden states. Its attention is causal, so with right
    padding no real token ever sees a pad: no mask is needed, and a batch gives
    each input the states it would get alone."""

    def __init__(self, path: str, pooling: PoolingConfig | None, max_tokens: int | None):
        from mlx_lm import load

        model, self.tokenizer = load(path)[:2]
        self.body: Any = getattr(model, "model", None)
        if self.body is None or not callable(self.body):
            raise ValueError(f"{path}: the mlx-lm model has no .model to take hidden states from")
        args = model.args
        self.width = int(args.hidden_size)
        self.vocab_size = int(args.vocab_size)
        limit = getattr(args, "max_position_embeddings", None) or 4096
        self.max_tokens = min(max_tokens or limit, limit)
        folder = Path(path)
        found = read_pooling(folder) if folder.is_dir() else None
        self.pooling = pooling or found or PoolingConfig("mean", True)

    def tokenize(self, texts: list[str], truncate: bool) -> list[list[int]]:
        ids = [list(self.tokenizer.encode(t)) for t in texts]
        return [i[: self.max_tokens] for i in ids] if truncate else ids

    def hidden_states(self, ids: mx.array, lengths: mx.array) -> mx.array:
        return self.body(ids)
