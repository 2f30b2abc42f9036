"""The prefix cache: mlx-lm's ``LRUPromptCache``, with a floor on what is worth reusing.

``fetch_nearest_cache`` deep-copies the cached KV cache it reuses, and for a
prompt that only shares its first few tokens with a longer cached sequence it
copies that whole sequence's cache, then trims it to those few tokens. A new
conversation that shares just the chat template's header with a long one would
copy megabytes (gigabytes on a big model with a long context) to save a
handful of tokens of prefill. A prefix shorter than ``min_tokens`` (unless it
is all of a short prompt but its last token) is prefilled from scratch instead.
"""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import LRUPromptCache


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
        # A short prompt still reuses its whole cached self (nothing to save there).
        if self.reusable_tokens(model, tokens) < min(self.min_tokens, len(tokens) - 1):
            return None, tokens
        return super().fetch_nearest_cache(model, tokens)
