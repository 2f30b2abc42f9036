"""A compact BERT encoder in MLX that loads Hugging Face BERT weights by name.

Written here rather than taken from ``mlx-embeddings`` (GPL-3.0). The module
tree mirrors ``transformers``' ``BertModel`` attribute for attribute
(``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``,
...), so a ``model.safetensors`` of a BERT checkpoint loads without renaming.
Only the encoder is built: sentence embeddings pool its last hidden states
(the ``pooler`` head and masked-LM heads of a checkpoint are ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

# Hugging Face's activation names: "gelu" is the exact (erf) GELU.
_ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "gelu_fast": nn.gelu_fast_approx,
    "relu": nn.relu,
}

# Checkpoints saved from BertFor... classes nest the encoder under "bert.".
_PREFIX = "bert."


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> BertConfig:
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        if config.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {config['hidden_act']!r}")
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in config.items() if k in fields})


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, ids: mx.array) -> mx.array:
        positions = mx.arange(ids.shape[1])
        # Single-segment input: every token type is 0.
        h = self.word_embeddings(ids) + self.position_embeddings(positions)
        h = h + self.token_type_embeddings.weight[0]
        return self.LayerNorm(h)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        b, n, d = x.shape

        def heads(t: mx.array) -> mx.array:
            return t.reshape(b, n, self.heads, -1).transpose(0, 2, 1, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scale = (d // self.heads) ** -0.5
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
        return out.transpose(0, 2, 1, 3).reshape(b, n, d)


class _DenseNorm(nn.Module):
    """Dense, then LayerNorm of the residual sum (BertSelfOutput, BertOutput)."""

    def __init__(self, inputs: int, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        # "self" is the checkpoint's own name for this part.
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACTIVATIONS[c.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c.intermediate_size, c)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = [_Layer(c) for _ in range(c.num_hidden_layers)]


class BertModel(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def __call__(self, ids: mx.array, mask: mx.array) -> mx.array:
        """Last hidden states (B, L, H) of right- or left-padded ``ids`` (B, L);
        ``mask`` (B, L) is 1 for real tokens, 0 for padding."""
        h = self.embeddings(ids)
        # Additive key mask, broadcast over heads and queries: padding gets no attention.
        bias = mx.where(mask[:, None, None, :].astype(mx.bool_), 0.0, -1e9).astype(h.dtype)
        for layer in self.encoder.layer:
            h = layer(h, bias)
        return h


def load_bert(folder: Path) -> BertModel:
    """A BERT encoder from a Hugging Face folder (``config.json`` + ``*.safetensors``)."""
    config = BertConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = BertModel(config)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    weights: dict[str, mx.array] = {}
    for file in files:
        loaded = mx.load(str(file))
        assert isinstance(loaded, dict)
        weights.update(loaded)
    weights = {k.removeprefix(_PREFIX): v for k, v in weights.items()}
    wanted = _parameter_names(model)
    missing = sorted(wanted - weights.keys())
    if missing:
        raise ValueError(f"{folder} is not a BERT checkpoint: missing weights {missing[:4]}...")
    model.load_weights([(k, v) for k, v in weights.items() if k in wanted], strict=True)
    mx.eval(model.parameters())
    model.eval()
    return model


def _parameter_names(model: nn.Module) -> set[str]:
    from mlx.utils import tree_flatten

    flat = tree_flatten(model.parameters())
    assert isinstance(flat, list)
    return {str(name) for name, _ in flat}
