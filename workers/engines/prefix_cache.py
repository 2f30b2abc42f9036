"""The prefix cache: mlx-lm's ``LRUPromptCache``, with a floor on what is worth reusing.

For a prompt that shares only its first few tokens with a longer cached
sequence, ``fetch_nearest_cache`` hands out a copy of that sequence's KV cache
trimmed to those tokens. The copy shares the cached buffers, so the first
write of the new tokens into them makes MLX copy the whole buffer: measured
here, 142 ms for a 30,000-token cache (8 KV heads of 128) against 1.3 ms for a
fresh cache. A new conversation that shares just the chat template's header
with a long one would pay that to save a handful of tokens of prefill. A
prefix shorter than ``min_tokens`` (unless it is all of a short prompt but its
last token) is prefilled from scratch instead.
"""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, trim_prompt_cache


class PrefixCache(LRUPromptCache):
    def __init__(self, *, max_size: int, max_bytes: int, min_tokens: int) -> None:
        super().__init__(max_size=max_size, max_bytes=max_bytes)
        self.min_tokens = min_tokens

    def reusable_tokens(self, model: Any, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` a fetch would take from the cache."""
        found = self._trie.search(model, tokens)
        if found.exact is not None:
            return len(tokens)
        shorter = len(found.shorter) if found.shorter is not None else 0
        longer = min(found.common_prefix, len(tokens) - 1) if found.longer is not None else 0
        return max(shorter, longer)

    def fetch_nearest_cache(self, model: Any, tokens: list[int]) -> tuple[Any, list[int]]:
        # One trie walk more than mlx-lm does (~9 ms per 30,000 tokens here), and
        # only when the cache is then used, where it saves the prompt's prefill.
        # A short prompt still reuses its whole cached self (nothing to save there).
        if self.reusable_tokens(model, tokens) < min(self.min_tokens, len(tokens) - 1):
            return None, tokens
        return super().fetch_nearest_cache(model, tokens)

    def longest_prefix(self, model: Any, tokens: list[int]) -> tuple[Any, int]:
        """A copy of the KV cache of the longest cached prefix of ``tokens``,
        and how many tokens it holds; (None, 0) if none is worth it.

        At least the prompt's last token is always left to feed: it is what
        makes the first new token.
        """
        cache, rest = self.fetch_nearest_cache(model, tokens)
        if cache is None:
            return None, 0
        if not rest:
            if not can_trim_prompt_cache(cache):
                return None, 0
            trim_prompt_cache(cache, 1)
            rest = tokens[-1:]
        return cache, len(tokens) - len(rest)
