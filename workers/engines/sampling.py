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
    temperature, top_p, min_p, top_k = params.temperature, params.top_p, params.min_p, params.top_k
    if temperature == 0 or params.seed is None:
        return make_sampler(temp=temperature, top_p=top_p, min_p=min_p, top_k=top_k)
    key = mx.random.key(params.seed)
    inv_temp = 1.0 / temperature

    def sample(logprobs: mx.array) -> mx.array:
        nonlocal key
        key, subkey = mx.random.split(key)
        if 0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        if min_p > 0.0:
            logprobs = apply_min_p(logprobs, min_p)
        if top_k > 0:
            logprobs = apply_top_k(logprobs, top_k)
        return mx.random.categorical(logprobs * inv_temp, key=subkey)

    return sample


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
