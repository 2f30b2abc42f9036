"""Per-request samplers for mlx-lm's BatchGenerator.

mlx-lm's ``make_sampler`` draws from MLX's global random state, which
concurrent requests in one batch share, so a ``seed`` would not reproduce.
A seeded request gets its own PRNG key, split once per token, and otherwise
the same filters mlx-lm applies.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import (
    apply_min_p,
    apply_top_k,
    apply_top_p,
    make_logits_processors,
    make_sampler,
)

from protocol.messages import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

# Tokens the repetition/presence/frequency penalties look back over.
PENALTY_CONTEXT = 64


def request_sampler(params: SamplingParams) -> Sampler:
    """Greedy for temperature 0 (mlx-lm's shared sampler, so the batch samples in one call)."""
    if params.temperature == 0 or params.seed is None:
        return make_sampler(
            temp=params.temperature, top_p=params.top_p, min_p=params.min_p, top_k=params.top_k
        )
    return SeededSampler(params)


class SeededSampler:
    """mlx-lm's filters, then a draw with this request's own PRNG key."""

    def __init__(self, params: SamplingParams) -> None:
        self._params = params
        self._inv_temp = 1.0 / params.temperature
        self._key = mx.random.key(params.seed or 0)
        self._previous = self._key

    def __call__(self, logprobs: mx.array) -> mx.array:
        p = self._params
        self._previous = self._key
        self._key, subkey = mx.random.split(self._key)
        if 0 < p.top_p < 1.0:
            logprobs = apply_top_p(logprobs, p.top_p)
        if p.min_p > 0.0:
            logprobs = apply_min_p(logprobs, p.min_p)
        if p.top_k > 0:
            logprobs = apply_top_k(logprobs, p.top_k)
        return mx.random.categorical(logprobs * self._inv_temp, key=subkey)

    def rewind(self) -> None:
        """Forget the last draw: it was made ahead of time and thrown away
        (a solo sequence moving into the batch), so the seed's sequence of
        draws stays what it would have been."""
        self._key = self._previous


def request_logits_processors(params: SamplingParams) -> list[LogitsProcessor]:
    """mlx-lm's logit bias and penalties; empty (no per-row work) when none are asked for."""
    return make_logits_processors(
        logit_bias=params.logit_bias or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1 else None,
        repetition_context_size=PENALTY_CONTEXT,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=PENALTY_CONTEXT,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=PENALTY_CONTEXT,
    )
