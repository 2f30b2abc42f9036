"""The raw bytes behind a token, for OpenAI's ``logprobs[].bytes``.

A byte-level BPE token can hold part of a UTF-8 character; decoding it alone
gives U+FFFD. The true bytes come from the token's symbol: GPT-2's byte
alphabet for byte-level BPE, ``<0xNN>`` byte fallback and ``▁`` for
SentencePiece. Such a token's text is shown as OpenAI shows it,
``bytes:\\xNN``, while ``bytes`` lets a client put characters back together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlx_lm.tokenizer_utils import _byte_decoder  # GPT-2's byte alphabet, as mlx-lm uses it


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
