"""Language models on mlx-lm: the scheduler of its continuous batching, and
the prefix cache.

Concurrent requests are sequences in mlx-lm's ``BatchGenerator``: they join
and leave the running batch between steps, so they share each forward pass
instead of queueing behind a lock. A request that arrives when the model is
idle decodes *solo* with mlx-lm's ``generate_step`` (what ``stream_generate``
runs), which is faster for one sequence than a batch of one; when a second
request arrives, the solo sequence moves into the batch with its KV cache and
carries on. Prompts are rendered by :mod:`~workers.engines.prompts`; each
sequence's tokens become its job's events in its own
:class:`~workers.engines.text_output.TextOutput`.
"""

from __future__ import annotations

import time
from typing import Any

import mlx.core as mx
import msgspec
import structlog
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
from mlx_lm.utils import load as load_model

from protocol.config import ModelConfig
from protocol.messages import (
    ChatJob,
    CompletionJob,
    Events,
    Finished,
    FinishReason,
    Job,
    Usage,
    WorkerStats,
)
from workers.engine import EngineDeadError, JobError, engine_options
from workers.engines.prefix_cache import PrefixCache
from workers.engines.prompts import ReasoningMarkers
from workers.engines.sampling import SeededSampler
from workers.engines.sequences import Sequence, SequenceMaker
from workers.engines.text_output import Accepted
from workers.engines.tools import ToolFormat
from workers.weights import local_or_hub

log = structlog.get_logger()


class LLMOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of an ``llm`` model."""

    # Sequences decoded together (mlx-lm's completion_batch_size).
    max_batch_size: int = 32
    # Prompts prefilled together, and the prefill chunk length.
    prefill_batch_size: int = 8
    prefill_step_size: int = 2048
    # max_tokens when the request gives none (always capped by the context).
    default_max_tokens: int = 4096
    # Defaults to the model config's max_position_embeddings.
    context_length: int | None = None
    trust_remote_code: bool = False
    # Prefix cache: KV caches of finished sequences, reused by later prompts
    # that start the same way (a conversation's next turn), within this budget.
    prompt_cache_bytes: int = 1 << 30
    prompt_cache_entries: int = 64
    # A shorter cached prefix is not worth copying its KV cache (see prefix_cache.py).
    prompt_cache_min_tokens: int = 32
    # Reasoning text apart from the answer (chat): "auto" uses the markers
    # mlx-lm finds in the tokenizer (<think>/</think> and kin), "off" keeps it
    # in the content, or [start, end] names the markers.
    reasoning: str | list[str] = "auto"
    # Tool calls (chat with tool_choice "auto"): the mlx-lm tool parser
    # (mlx_lm.tool_parsers.<name>, e.g. "json_tools") reading the model's calls;
    # None uses the one mlx-lm infers from the chat template, if any.
    tool_parser: str | None = None


class LLMEngine:
    family = "llm"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, LLMOptions)
        self._jobs: dict[str, Sequence] = {}  # every running sequence
        self._batched: dict[int, Sequence] = {}  # those in the batch, by uid
        self._solo: Sequence | None = None  # never set while the batch has any
        self._stats = WorkerStats()

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        model, tokenizer, config = load_model(  # type: ignore[misc]
            local_or_hub(self.config),
            return_config=True,
            tokenizer_config={"trust_remote_code": self.options.trust_remote_code},
        )
        self.model = model
        self.tokenizer = tokenizer
        self._eos = set(tokenizer.eos_token_ids)
        name, options = self.config.name, self.options
        tool_parser = options.tool_parser
        self.context_length = (
            options.context_length or config.get("max_position_embeddings") or 4096
        )
        self._sequences = SequenceMaker(
            tokenizer=tokenizer,
            model_name=name,
            vocab_size=getattr(getattr(model, "args", None), "vocab_size", None),
            context_length=self.context_length,
            max_prompt_tokens=self.config.max_prompt_tokens,
            default_max_tokens=options.default_max_tokens,
            reasoning=ReasoningMarkers.configured(options.reasoning, tokenizer, model=name),
            tool_format=(
                ToolFormat.named(tool_parser) if tool_parser else ToolFormat.of_tokenizer(tokenizer)
            ),
        )
        self._prefix_cache = PrefixCache(
            max_size=options.prompt_cache_entries,
            max_bytes=options.prompt_cache_bytes,
            min_tokens=options.prompt_cache_min_tokens,
        )
        self.generator = BatchGenerator(
            model,
            stop_tokens=[[t] for t in tokenizer.eos_token_ids],
            completion_batch_size=options.max_batch_size,
            prefill_batch_size=options.prefill_batch_size,
            prefill_step_size=options.prefill_step_size,
        )

    # --- jobs ---------------------------------------------------------------

    def prompt_tokens(self, job: ChatJob | CompletionJob) -> list[int]:
        return self._sequences.prompt_tokens(job)

    def submit(self, job: Job) -> Events | None:
        if not isinstance(job, ChatJob | CompletionJob):
            raise JobError(f"model {self.config.name!r} is a language model", param="model")
        tokens = self.prompt_tokens(job)
        if not tokens:
            raise JobError("the prompt is empty")
        if isinstance(job, ChatJob) and job.count_only:
            usage = Usage(len(tokens), 0)
            finished = Finished(job.id, "stop", usage, context_length=self.context_length)
            return Events(finished=[finished])
        seq = self._sequences.make(job, tokens)
        # All of the above only read the job and the model; scheduling changes
        # the batch, and a failure half-way through leaves it broken.
        try:
            self._schedule(seq)
        except Exception as exc:
            raise EngineDeadError(f"scheduling a job failed: {type(exc).__name__}: {exc}") from exc
        return None

    def _schedule(self, seq: Sequence) -> None:
        cache, seq.output.cached_tokens = self._prefix_cache.longest_prefix(
            self.config.name, seq.tokens
        )
        if self._solo is not None:
            self._move_solo_to_batch()
        uncached = len(seq.tokens) - seq.output.cached_tokens
        if not self._jobs and uncached <= self.options.prefill_step_size:
            self._start_solo(seq, cache)
        else:
            self._insert_prompt(seq, cache)
        self._jobs[seq.job_id] = seq
        self._stats.prompt_tokens += len(seq.tokens)

    # --- the prefix cache ---------------------------------------------------

    def _remember(self, tokens: list[int], cache: list[Any]) -> None:
        """Keep a finished sequence's KV cache for prompts that extend it."""
        if tokens:
            self._prefix_cache.insert_cache(self.config.name, tokens, cache)

    # --- solo and batch -----------------------------------------------------

    def _insert_prompt(self, seq: Sequence, cache: list[Any] | None) -> None:
        cached = seq.output.cached_tokens
        all_tokens = seq.tokens[:cached] if cache is not None else None
        self._insert(seq, [seq.tokens[cached:]], cache, all_tokens=all_tokens)

    def _start_solo(self, seq: Sequence, cache: list[Any] | None) -> None:
        # The prompt's new part fits one prefill chunk, so the first step
        # blocks no longer than a batch's prefill step would.
        seq.cache = cache if cache is not None else make_prompt_cache(self.model)
        seq.solo = generate_step(
            mx.array(seq.tokens[seq.output.cached_tokens :]),
            self.model,
            max_tokens=seq.max_tokens,
            sampler=seq.sampler,
            logits_processors=seq.processors,
            prompt_cache=seq.cache,
        )
        self._solo = seq

    def _move_solo_to_batch(self) -> None:
        """A second request arrived: continue the solo sequence inside the batch.

        ``generate_step`` has already fed its last yielded token to the model,
        so that token is trimmed off the cache and fed again as the batch
        entry's one-token prompt; the next token is the one it would have made.
        """
        seq = self._solo
        assert seq is not None and seq.solo is not None and seq.cache is not None
        seq.solo.close()
        if seq.output.completion_tokens == 0:  # not started yet: its prompt as it was
            self._insert_prompt(seq, seq.cache if seq.output.cached_tokens else None)
        else:
            trim_prompt_cache(seq.cache, 1)
            if isinstance(seq.sampler, SeededSampler):
                seq.sampler.rewind()  # generate_step drew the next token already
            if seq.grammar is not None:
                # Its matcher has consumed the token fed again: the batch's
                # context (the whole prompt, not solo's uncached part) ends there.
                seq.grammar.resync()
            self._insert(seq, [seq.tokens[-1:]], seq.cache, all_tokens=seq.tokens[:-1])
        seq.solo = seq.cache = None
        self._solo = None

    def _insert(
        self,
        seq: Sequence,
        prompt: list[list[int]],
        cache: list[Any] | None,
        all_tokens: list[int] | None = None,
    ) -> None:
        (uid,) = self.generator.insert(
            prompt,
            [seq.max_tokens - seq.output.completion_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[all_tokens] if all_tokens is not None else None,
            samplers=[seq.sampler],
            logits_processors=[seq.processors],
        )
        seq.uid = uid
        self._batched[uid] = seq

    def cancel(self, job_id: str) -> bool:
        seq = self._jobs.pop(job_id, None)
        if seq is None:
            return False
        if seq.solo is not None:
            seq.solo.close()
            self._solo = None
        elif seq.uid is not None:
            self.generator.remove([seq.uid])
            del self._batched[seq.uid]
        return True

    def has_work(self) -> bool:
        return bool(self._jobs)

    # --- generation ---------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Decode for up to ``budget_s``, coalescing each job's text.

        Returns early once some job produced its first visible text, so time
        to first token does not wait for the budget. (Not its first token: a
        streaming detokenizer may hold that token's text back until the next.)
        """
        events = Events(deltas=[], finished=[], failed=[])
        deadline = time.perf_counter() + budget_s
        while self._jobs:
            first_text = self._step_solo(events) if self._solo else self._step_batch(events)
            if first_text or time.perf_counter() >= deadline:
                break
        for seq in self._jobs.values():
            if (delta := seq.output.delta()) is not None:
                events.deltas.append(delta)
        return events

    def _step_solo(self, events: Events) -> bool:
        seq = self._solo
        assert seq is not None and seq.solo is not None
        token, logprobs = next(seq.solo)
        seq.tokens.append(token)
        finish: FinishReason | None = None
        if token in self._eos:
            finish = "stop"
        elif seq.output.completion_tokens + 1 >= seq.max_tokens:
            finish = "length"
        accepted = self._accept(seq, token, logprobs, finish, events)
        if accepted.ended:
            seq.solo.close()
            self._solo = None
            # The cache holds every token generate_step has fed, in order.
            fed = getattr(seq.cache[0], "offset", None) if seq.cache else None
            if isinstance(fed, int):
                self._remember(seq.tokens[:fed], seq.cache)  # type: ignore[arg-type]
        return accepted.first_text

    def _step_batch(self, events: Events) -> bool:
        _, responses = self.generator.next()
        first_text = False
        stopped: list[int] = []
        for r in responses:
            seq = self._batched.get(r.uid)
            if seq is None:
                continue
            accepted = self._accept(seq, r.token, r.logprobs, r.finish_reason, events)
            first_text |= accepted.first_text
            if accepted.ended:
                del self._batched[r.uid]
                if r.finish_reason is None:  # a stop string: the generator goes on
                    stopped.append(r.uid)
                else:
                    self._remember(r.all_tokens, r.prompt_cache)
        if stopped:
            caches = self.generator.remove(stopped, return_prompt_caches=True)
            for cache, tokens in caches.values():
                self._remember(tokens, cache)
        return first_text

    def _accept(
        self,
        seq: Sequence,
        token: int,
        logprobs: mx.array,
        finish_reason: FinishReason | None,
        events: Events,
    ) -> Accepted:
        """One new token of ``seq``; a sequence that ended leaves with its Finished."""
        self._stats.generation_tokens += 1
        accepted = seq.output.accept(token, logprobs, finish_reason)
        if accepted.finished is not None:
            del self._jobs[seq.job_id]
            self._stats.requests_finished += 1
            if seq.grammar is not None and seq.grammar.failed:  # its mask let EOS only
                log.warning("grammar_failed", job=seq.job_id, error=seq.grammar.failed[:500])
            events.finished.append(accepted.finished)
        return accepted

    def stats(self) -> WorkerStats:
        self._stats.active = len(self._jobs)
        return self._stats
