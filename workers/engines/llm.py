"""Language models on mlx-lm, served through its continuous batching.

Concurrent requests are sequences in mlx-lm's ``BatchGenerator``: they join
and leave the running batch between steps, so they share each forward pass
instead of queueing behind a lock. A request that arrives when the model is
idle decodes *solo* with mlx-lm's ``generate_step`` (what ``stream_generate``
runs), which is faster for one sequence than a batch of one; when a second
request arrives, the solo sequence moves into the batch with its KV cache and
carries on. Text is streamed through mlx-lm's own streaming detokenizers
(correct UTF-8 across token boundaries) and cut at stop strings.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import msgspec
import structlog
from mlx_lm.generate import BatchGenerator, TextStateMachine, generate_step
from mlx_lm.models.cache import (
    can_trim_prompt_cache,
    make_prompt_cache,
    trim_prompt_cache,
)
from mlx_lm.utils import load as load_model

from protocol.config import ModelConfig
from protocol.messages import (
    ChatJob,
    ChatMessage,
    CompletionJob,
    Delta,
    Events,
    Finished,
    Job,
    TokenLogprob,
    TopLogprob,
    Usage,
    WorkerStats,
)
from workers.engine import JobError, engine_options, room_left
from workers.engines.grammar import (
    GrammarError,
    GrammarProcessor,
    compile_json_schema,
    compile_tool_calls,
    grammar_tokenizer,
)
from workers.engines.prefix_cache import PrefixCache
from workers.engines.sampling import (
    LogitsProcessor,
    Sampler,
    SeededSampler,
    request_logits_processors,
    request_sampler,
)
from workers.engines.stops import StopStringMatcher
from workers.engines.token_bytes import token_bytes_reader, token_text
from workers.engines.tools import ToolCallReader, ToolFormat, strict_call_schema
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
    # BLAS threads of the model process (read by its supervisor).
    blas_threads: int = 1
    # Reasoning text apart from the answer (chat): "auto" uses the markers
    # mlx-lm finds in the tokenizer (<think>/</think> and kin), "off" keeps it
    # in the content, or [start, end] names the markers.
    reasoning: str | list[str] = "auto"
    # Tool calls (chat with tool_choice "auto"): the mlx-lm tool parser
    # (mlx_lm.tool_parsers.<name>, e.g. "json_tools") reading the model's calls;
    # None uses the one mlx-lm infers from the chat template, if any.
    tool_parser: str | None = None


@dataclass
class _Sequence:
    job_id: str
    detokenizer: Any
    stops: StopStringMatcher
    sampler: Sampler
    processors: list[LogitsProcessor]
    max_tokens: int
    tokens: list[int]  # prompt, then every generated token
    prompt_tokens: int
    cached_tokens: int  # the prompt's prefix that came from the prefix cache
    completion_tokens: int = 0
    # Completion tokens read while inside the reasoning markers (or crossing one).
    reasoning_tokens: int = 0
    sent_text: bool = False
    pending_text: list[str] = field(default_factory=list)
    pending_reasoning: list[str] = field(default_factory=list)
    pending_tokens: int = 0
    # mlx-lm's TextStateMachine state splitting reasoning from content (chat).
    reasoning: Any = None
    # None: logprobs not asked for. Otherwise those of the pending tokens.
    pending_logprobs: list[TokenLogprob] | None = None
    top_logprobs: int = 0
    # Structured output: the processor masking what the JSON schema forbids.
    grammar: GrammarProcessor | None = None
    # Chat with tools: what reads tool calls out of the content text.
    tools: ToolCallReader | None = None
    # In the batch: its BatchGenerator uid. Solo: its generate_step and cache.
    uid: int | None = None
    solo: Generator[tuple[Any, mx.array], None, None] | None = None
    cache: list[Any] | None = None


class LLMEngine:
    family = "llm"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, LLMOptions)
        self._jobs: dict[str, _Sequence] = {}  # every running sequence
        self._batched: dict[int, _Sequence] = {}  # those in the batch, by uid
        self._solo: _Sequence | None = None  # never set while the batch has any
        self._stats = WorkerStats()
        # count_only jobs, answered by the next step
        self._counted: list[Finished] = []

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
        self._reasoning = self._reasoning_markers()
        if self.options.tool_parser is not None:
            self._tool_format: ToolFormat | None = ToolFormat.named(self.options.tool_parser)
        else:
            self._tool_format = ToolFormat.of_tokenizer(tokenizer)
        self._prefix_cache = PrefixCache(
            max_size=self.options.prompt_cache_entries,
            max_bytes=self.options.prompt_cache_bytes,
            min_tokens=self.options.prompt_cache_min_tokens,
        )
        self._token_bytes = token_bytes_reader(tokenizer)
        # llguidance's tokenizer for response_format (~1 s for a big vocabulary).
        self._grammar_tokenizer = grammar_tokenizer(tokenizer, sorted(self._eos))
        self.context_length = (
            self.options.context_length or config.get("max_position_embeddings") or 4096
        )
        self._new_generator()

    def _reasoning_markers(self) -> TextStateMachine | None:
        setting = self.options.reasoning
        if setting == "off":
            return None
        if setting == "auto":
            if not self.tokenizer.has_thinking:
                return None
            start, end = self.tokenizer.think_start, self.tokenizer.think_end
        elif isinstance(setting, list) and len(setting) == 2 and all(setting):
            start, end = setting
        else:
            raise ValueError(
                f"model {self.config.name!r}: reasoning must be 'auto', 'off' or [start, end]"
            )
        self._think_start, self._think_end = start, end
        return TextStateMachine({"normal": [(start, "reasoning")], "reasoning": [(end, "normal")]})

    def _reasoning_state(self, job: Job, tokens: list[int]) -> Any:
        """For chat with reasoning markers: where the reply starts. A template
        that opens the reasoning block itself (the prompt ends inside it)
        starts the reply in reasoning, as mlx-lm's server does."""
        if self._reasoning is None or not isinstance(job, ChatJob):
            return None
        prompt = self.tokenizer.decode(tokens[-64:])
        inside = prompt.rfind(self._think_start) > prompt.rfind(self._think_end)
        return self._reasoning.make_state("reasoning" if inside else "normal")

    def _new_generator(self) -> None:
        self.generator = BatchGenerator(
            self.model,
            stop_tokens=[[t] for t in self.tokenizer.eos_token_ids],
            completion_batch_size=self.options.max_batch_size,
            prefill_batch_size=self.options.prefill_batch_size,
            prefill_step_size=self.options.prefill_step_size,
        )

    def reset(self) -> None:
        """Forget every sequence (after an engine error) with a fresh generator."""
        self._jobs.clear()
        self._batched.clear()
        self._solo = None
        self.generator.close()
        self._new_generator()

    # --- jobs ---------------------------------------------------------------

    def prompt_tokens(self, job: ChatJob | CompletionJob) -> list[int]:
        tokenizer = self.tokenizer
        if isinstance(job, ChatJob):
            if not tokenizer.has_chat_template:
                raise JobError(
                    f"model {self.config.name!r} has no chat template; use /v1/completions"
                )
            messages = [_template_message(m) for m in job.messages]
            extra = {"tools": job.tools} if job.tools else {}
            try:
                text = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False, **extra
                )
            except Exception as exc:  # jinja raises TemplateError, ValueError...
                raise JobError(f"the model's chat template rejected the messages: {exc}") from exc
            return tokenizer.encode(text, add_special_tokens=False)
        if isinstance(job.prompt, str):
            return tokenizer.encode(job.prompt)
        vocab = self._vocab_size()
        if vocab is not None and any(not 0 <= t < vocab for t in job.prompt):
            raise JobError(f"prompt token ids must be in [0, {vocab})")
        return list(job.prompt)

    def _vocab_size(self) -> int | None:
        args = getattr(self.model, "args", None)
        return getattr(args, "vocab_size", None)

    def submit(self, job: Job) -> None:
        if not isinstance(job, ChatJob | CompletionJob):
            raise JobError(f"model {self.config.name!r} is a language model", param="model")
        tokens = self.prompt_tokens(job)
        if not tokens:
            raise JobError("the prompt is empty")
        if isinstance(job, ChatJob) and job.count_only:
            usage = Usage(len(tokens), 0)
            self._counted.append(
                Finished(job.id, "stop", usage, context_length=self.context_length)
            )
            return
        room = room_left(self.context_length, len(tokens))
        params = job.params
        vocab = self._vocab_size()
        if vocab is not None and any(not 0 <= t < vocab for t in params.logit_bias):
            raise JobError(f"'logit_bias' token ids must be in [0, {vocab})", param="logit_bias")
        grammar = self._grammar(params.json_schema)
        if grammar is None and isinstance(job, ChatJob):
            grammar = self._strict_tools_grammar(job)
        processors = request_logits_processors(params)
        if grammar is not None:
            processors.append(grammar)  # last: no bias or penalty can lift its mask
        seq = _Sequence(
            job_id=job.id,
            detokenizer=self.tokenizer.detokenizer,
            stops=StopStringMatcher(params.stop),
            sampler=request_sampler(params),
            processors=processors,
            max_tokens=min(params.max_tokens or self.options.default_max_tokens, room),
            tokens=tokens,
            prompt_tokens=len(tokens),
            cached_tokens=0,
            pending_logprobs=[] if params.logprobs else None,
            top_logprobs=params.top_logprobs,
            grammar=grammar,
        )
        # Structured output is the answer itself, never reasoning.
        structured = params.json_schema is not None
        seq.reasoning = None if structured else self._reasoning_state(job, tokens)
        if isinstance(job, ChatJob) and job.tools and job.tool_mode != "none":
            if job.tool_mode == "forced" and grammar is None:
                raise JobError("a forced tool call needs its JSON schema", param="tool_choice")
            if job.tool_mode == "forced" or self._tool_format is not None:
                seq.tools = ToolCallReader(job.tool_mode, self._tool_format, job.tools)
        cache = self._cached_prefix(seq)
        if params.echo and isinstance(job, CompletionJob):
            prompt = job.prompt
            seq.pending_text.append(
                prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt)
            )
        if self._solo is not None:
            self._move_solo_to_batch()
        if not self._jobs and len(tokens) - seq.cached_tokens <= self.options.prefill_step_size:
            self._start_solo(seq, cache)
        else:
            self._insert_prompt(seq, cache)
        self._jobs[job.id] = seq
        self._stats.prompt_tokens += len(tokens)

    def _grammar(self, schema: str | None) -> GrammarProcessor | None:
        if schema is None:
            return None
        if self._grammar_tokenizer is None:
            raise JobError(
                f"model {self.config.name!r} cannot constrain its output: its tokenizer "
                "is not a fast (Rust) tokenizer",
                param="response_format",
            )
        try:
            return GrammarProcessor(self._grammar_tokenizer, compile_json_schema(schema))
        except GrammarError as exc:
            raise JobError(f"'response_format': {exc}", param="response_format") from exc

    def _strict_tools_grammar(self, job: ChatJob) -> GrammarProcessor | None:
        """For tool_choice "auto" with "strict" tools: a grammar that lets the
        model write text or calls, whose arguments then validate. Only for
        tool formats whose calls are plain JSON (others are parsed unconstrained)."""
        fmt = self._tool_format
        if job.tool_mode != "auto" or not job.tools or fmt is None or not fmt.json_body:
            return None
        schema = strict_call_schema(job.tools)
        if schema is None or self._grammar_tokenizer is None:
            return None
        try:
            grammar = compile_tool_calls(fmt.start, fmt.end, schema)
            return GrammarProcessor(self._grammar_tokenizer, grammar)
        except GrammarError as exc:
            raise JobError(f"'tools': {exc}", param="tools") from exc

    def _cached_prefix(self, seq: _Sequence) -> list[Any] | None:
        """A copy of the KV cache of the longest cached prefix of the prompt.

        At least the prompt's last token is always left to feed: it is what
        makes the first new token.
        """
        cache, rest = self._prefix_cache.fetch_nearest_cache(self.config.name, seq.tokens)
        if cache is None:
            return None
        if not rest:
            if not can_trim_prompt_cache(cache):
                return None
            trim_prompt_cache(cache, 1)
            rest = seq.tokens[-1:]
        seq.cached_tokens = len(seq.tokens) - len(rest)
        return cache

    def _remember(self, tokens: list[int], cache: list[Any]) -> None:
        """Keep a finished sequence's KV cache for prompts that extend it."""
        if tokens:
            self._prefix_cache.insert_cache(self.config.name, tokens, cache)

    def _insert_prompt(self, seq: _Sequence, cache: list[Any] | None) -> None:
        cached = seq.cached_tokens
        all_tokens = seq.tokens[:cached] if cache is not None else None
        self._insert(seq, [seq.tokens[cached:]], cache, all_tokens=all_tokens)

    def _start_solo(self, seq: _Sequence, cache: list[Any] | None) -> None:
        # The prompt's new part fits one prefill chunk, so the first step
        # blocks no longer than a batch's prefill step would.
        seq.cache = cache if cache is not None else make_prompt_cache(self.model)
        seq.solo = generate_step(
            mx.array(seq.tokens[seq.cached_tokens :]),
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
        if seq.completion_tokens == 0:  # not started yet: its prompt as it was
            self._insert_prompt(seq, seq.cache if seq.cached_tokens else None)
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
        seq: _Sequence,
        prompt: list[list[int]],
        cache: list[Any] | None,
        all_tokens: list[int] | None = None,
    ) -> None:
        (uid,) = self.generator.insert(
            prompt,
            [seq.max_tokens - seq.completion_tokens],
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
        return bool(self._jobs) or bool(self._counted)

    # --- generation ---------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Decode for up to ``budget_s``, coalescing each job's text.

        Returns early once some job produced its first visible text, so time
        to first token does not wait for the budget. (Not its first token: a
        streaming detokenizer may hold that token's text back until the next.)
        """
        events = Events(deltas=[], finished=self._counted, failed=[])
        self._counted = []
        deadline = time.perf_counter() + budget_s
        while self._jobs:
            first_text = self._step_solo(events) if self._solo else self._step_batch(events)
            if first_text or time.perf_counter() >= deadline:
                break
        for seq in self._jobs.values():
            if seq.pending_tokens:
                events.deltas.append(
                    Delta(
                        seq.job_id,
                        "".join(seq.pending_text),
                        seq.pending_tokens,
                        self._take_logprobs(seq),
                        "".join(seq.pending_reasoning),
                        seq.tools.take() if seq.tools is not None else [],
                    )
                )
                seq.pending_text.clear()
                seq.pending_reasoning.clear()
                seq.pending_tokens = 0
        return events

    @staticmethod
    def _take_logprobs(seq: _Sequence) -> list[TokenLogprob] | None:
        if seq.pending_logprobs is None:
            return None
        taken, seq.pending_logprobs = seq.pending_logprobs, []
        return taken

    def _step_solo(self, events: Events) -> bool:
        seq = self._solo
        assert seq is not None and seq.solo is not None
        token, logprobs = next(seq.solo)
        seq.tokens.append(token)
        finish = None
        if token in self._eos:
            finish = "stop"
        elif seq.completion_tokens + 1 >= seq.max_tokens:
            finish = "length"
        ended, first_text = self._accept(seq, token, logprobs, finish, events)
        if ended:
            seq.solo.close()
            self._solo = None
            # The cache holds every token generate_step has fed, in order.
            fed = getattr(seq.cache[0], "offset", None) if seq.cache else None
            if isinstance(fed, int):
                self._remember(seq.tokens[:fed], seq.cache)  # type: ignore[arg-type]
        return first_text

    def _step_batch(self, events: Events) -> bool:
        _, responses = self.generator.next()
        first_text = False
        stopped: list[int] = []
        for r in responses:
            seq = self._batched.get(r.uid)
            if seq is None:
                continue
            ended, first = self._accept(seq, r.token, r.logprobs, r.finish_reason, events)
            first_text |= first
            if ended:
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
        seq: _Sequence,
        token: int,
        logprobs: mx.array,
        finish_reason: str | None,
        events: Events,
    ) -> tuple[bool, bool]:
        """One new token of ``seq``: returns (the job ended, its first text appeared)."""
        seq.completion_tokens += 1
        seq.pending_tokens += 1
        self._stats.generation_tokens += 1
        if finish_reason != "stop":  # an EOS token is not part of the text
            seq.detokenizer.add_token(token)
            if seq.pending_logprobs is not None:
                seq.pending_logprobs.append(self._logprob(token, logprobs, seq.top_logprobs))
        if finish_reason is not None:
            seq.detokenizer.finalize()
        text, hit_stop = seq.stops.feed(seq.detokenizer.last_segment)
        first_text = bool(text) and not seq.sent_text
        seq.sent_text |= first_text
        if hit_stop:
            finish_reason = "stop"
        elif finish_reason is not None:
            text += seq.stops.flush()
        thinking = seq.reasoning is not None and seq.reasoning[0] == "reasoning"
        self._split_reasoning(seq, text, end=finish_reason is not None)
        if thinking or (seq.reasoning is not None and seq.reasoning[0] == "reasoning"):
            seq.reasoning_tokens += 1
        if finish_reason is None:
            return False, first_text
        del self._jobs[seq.job_id]
        self._stats.requests_finished += 1
        if seq.grammar is not None and seq.grammar.failed:  # its mask let EOS only
            log.warning("grammar_failed", job=seq.job_id, error=seq.grammar.failed[:500])
        calls = seq.tools.take() if seq.tools is not None else []
        if seq.tools is not None and seq.tools.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        events.finished.append(
            Finished(
                id=seq.job_id,
                finish_reason=finish_reason,  # type: ignore[arg-type]
                usage=Usage(
                    seq.prompt_tokens,
                    seq.completion_tokens,
                    seq.cached_tokens,
                    seq.reasoning_tokens,
                ),
                text="".join(seq.pending_text),
                logprobs=self._take_logprobs(seq),
                stop_sequence=seq.stops.matched,
                reasoning="".join(seq.pending_reasoning),
                tool_calls=calls,
            )
        )
        return True, first_text

    @staticmethod
    def _split_reasoning(seq: _Sequence, text: str, *, end: bool) -> None:
        """Route text to the answer or the reasoning; markers themselves vanish.
        The answer's tool calls (if it may have any) are taken out of it."""
        if seq.reasoning is None:
            segments = [("normal", text)]
        else:
            seq.reasoning, segments = TextStateMachine.split(seq.reasoning, text)
            if end:  # a marker's possible start held back is plain text after all
                seq.reasoning, held, state = TextStateMachine.flush(seq.reasoning)
                segments.append((state, held))
        answer = []
        for state, part in segments:
            if state == "reasoning":
                seq.pending_reasoning.append(part)
            else:
                answer.append(part)
        content = "".join(answer)
        if seq.tools is not None:
            content = seq.tools.feed(content, end=end)
        seq.pending_text.append(content)

    def _logprob(self, token: int, logprobs: mx.array, top: int) -> TokenLogprob:
        """OpenAI's view of a token: its text and raw bytes, and the likeliest alternatives."""
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
                raw = self._token_bytes(i)
                alternatives.append(TopLogprob(token_text(raw), value, list(raw)))
        raw = self._token_bytes(token)
        chosen = float(logprobs[token].item())  # type: ignore[arg-type]
        return TokenLogprob(token_text(raw), chosen, list(raw), alternatives)

    def stats(self) -> WorkerStats:
        self._stats.active = len(self._jobs)
        return self._stats


def _template_message(message: ChatMessage) -> dict[str, Any]:
    """A message as Hugging Face chat templates expect it: tool calls with
    their arguments as an object (as mlx-lm's server passes them)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        if out["content"] is None:
            out["content"] = ""
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.loads(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.reasoning:
        out["reasoning_content"] = message.reasoning
    return out
