"""OpenAI's logprobs of a generated token: its text, raw bytes and logprob,
and the likeliest alternatives.

A byte-level BPE token can hold part of a UTF-8 character; decoding it alone
gives U+FFFD. The true bytes come from the token's symbol: GPT-2's byte
alphabet for byte-level BPE, ``<0xNN>`` byte fallback and ``▁`` for
SentencePiece. Such a token's text is shown as OpenAI shows it,
``bytes:\\xNN``, while ``bytes`` lets a client put characters back together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx_lm.tokenizer_utils import _byte_decoder  # GPT-2's byte alphabet, as mlx-lm uses it

from protocol.messages import TokenLogprob, TopLogprob


class TokenLogprobs:
    """The logprobs of one tokenizer's tokens (built once, at load)."""

    def __init__(self, tokenizer: Any) -> None:
        self._bytes = token_bytes_reader(tokenizer)

    def __call__(self, token: int, logprobs: mx.array, top: int) -> TokenLogprob:
        """``token`` drawn from ``logprobs`` (the vocabulary's, after any
        grammar mask), with the ``top`` likeliest tokens as alternatives."""
        logprobs = logprobs.reshape(-1)
        alternatives: list[TopLogprob] = []
        if top > 0:
            ids = mx.argpartition(-logprobs, kth=top - 1)[:top]
            values = logprobs[ids]
            order = mx.argsort(-values)
            ranked: list[int] = ids[order].tolist()  # type: ignore[assignment]
            scores: list[float] = values[order].tolist()  # type: ignore[assignment]
            for i, value in zip(ranked, scores, strict=True):
                if value == -math.inf:  # masked out by a grammar: not an alternative
                    break
                raw = self._bytes(i)
                alternatives.append(TopLogprob(token_text(raw), value, list(raw)))
        raw = self._bytes(token)
        chosen = float(logprobs[token].item())  # type: ignore[arg-type]
        return TokenLogprob(token_text(raw), chosen, list(raw), alternatives)


def token_bytes_reader(tokenizer: Any) -> Callable[[int], bytes]:
    kind = type(tokenizer.detokenizer).__name__
    byte_decoder = _byte_decoder()

    def from_symbol(token: int) -> bytes:
        symbol = tokenizer.convert_ids_to_tokens(token)
        if kind == "BPEStreamingDetokenizer" and all(c in byte_decoder for c in symbol):
            return bytes(byte_decoder[c] for c in symbol)
        if kind.startswith("SPM") and symbol.startswith("<0x") and symbol.endswith(">"):
            return bytes([int(symbol[3:-1], 16)])
        if kind.startswith("SPM"):
            return symbol.replace("\u2581", " ").encode()
        return tokenizer.decode([token]).encode()

    return from_symbol


def token_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
