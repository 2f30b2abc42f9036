"""Per-request samplers for mlx-lm's BatchGenerator.

mlx-lm's ``make_sampler`` draws from MLX's global random state, which
concurrent requests in one batch share, so a ``seed`` would not reproduce.
A seeded request gets its own PRNG key, split once per token, and otherwise
the same filters mlx-lm applies.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_top_p, make_sampler

Sampler = Callable[[mx.array], mx.array]


def request_sampler(temperature: float, top_p: float, seed: int | None) -> Sampler:
    """Greedy for temperature 0 (mlx-lm's shared sampler, so the batch samples in one call)."""
    if temperature == 0 or seed is None:
        return make_sampler(temp=temperature, top_p=top_p)
    key = mx.random.key(seed)
    inv_temp = 1.0 / temperature

    def sample(logprobs: mx.array) -> mx.array:
        nonlocal key
        key, subkey = mx.random.split(key)
        if 0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * inv_temp, key=subkey)

    return sample
