"""Language models on mlx-lm, served through its continuous batching.

Every request is one sequence in mlx-lm's ``BatchGenerator``: requests join
and leave the running batch between steps, so concurrent requests to one
model share each forward pass instead of queueing behind a lock. Text is
streamed through mlx-lm's own streaming detokenizers (correct UTF-8 across
token boundaries) and cut at stop strings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from mlx_lm.generate import BatchGenerator
from mlx_lm.utils import load as load_model

from protocol.config import ModelConfig
from protocol.messages import (
    ChatJob,
    CompletionJob,
    Delta,
    Events,
    Finished,
    Job,
    Usage,
    WorkerStats,
)
from workers.engine import JobError
from workers.engines.sampling import request_sampler
from workers.engines.stops import StopStringMatcher
from workers.weights import local_or_hub


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


@dataclass
class _Sequence:
    job_id: str
    detokenizer: Any
    stops: StopStringMatcher
    prompt_tokens: int
    completion_tokens: int = 0
    sent_text: bool = False
    pending_text: list[str] = field(default_factory=list)
    pending_tokens: int = 0


class LLMEngine:
    family = "llm"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        try:
            self.options = msgspec.convert(model.options, LLMOptions)
        except msgspec.ValidationError as exc:
            raise ValueError(f"model {model.name!r}: invalid options: {exc}") from exc
        self._sequences: dict[int, _Sequence] = {}
        self._uids: dict[str, int] = {}
        self._stats = WorkerStats()

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        model, tokenizer, config = load_model(
            local_or_hub(self.config),
            return_config=True,
            tokenizer_config={"trust_remote_code": self.options.trust_remote_code},
        )
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = (
            self.options.context_length or config.get("max_position_embeddings") or 4096
        )
        self._new_generator()

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
        self._sequences.clear()
        self._uids.clear()
        self.generator.close()
        self._new_generator()

    # --- jobs ---------------------------------------------------------------

    def prompt_tokens(self, job: Job) -> list[int]:
        tokenizer = self.tokenizer
        if isinstance(job, ChatJob):
            if not tokenizer.has_chat_template:
                raise JobError(
                    f"model {self.config.name!r} has no chat template; use /v1/completions"
                )
            messages = [msgspec.structs.asdict(m) for m in job.messages]
            for m in messages:
                if m["name"] is None:
                    del m["name"]
            try:
                text = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            except Exception as exc:  # jinja raises TemplateError, ValueError...
                raise JobError(f"the model's chat template rejected the messages: {exc}") from exc
            return tokenizer.encode(text, add_special_tokens=False)
        if isinstance(job.prompt, str):
            return tokenizer.encode(job.prompt)
        vocab = self.model.args.vocab_size if hasattr(self.model, "args") else None
        if vocab is not None and any(not 0 <= t < vocab for t in job.prompt):
            raise JobError(f"prompt token ids must be in [0, {vocab})")
        return list(job.prompt)

    def submit(self, job: Job) -> None:
        assert isinstance(job, ChatJob | CompletionJob)
        tokens = self.prompt_tokens(job)
        if not tokens:
            raise JobError("the prompt is empty")
        room = self.context_length - len(tokens)
        if room <= 0:
            raise JobError(
                f"this model's maximum context length is {self.context_length} tokens, "
                f"but the prompt has {len(tokens)} tokens",
                code="context_length_exceeded",
            )
        params = job.params
        max_tokens = min(params.max_tokens or self.options.default_max_tokens, room)
        (uid,) = self.generator.insert(
            [tokens],
            [max_tokens],
            samplers=[request_sampler(params.temperature, params.top_p, params.seed)],
        )
        self._sequences[uid] = _Sequence(
            job_id=job.id,
            detokenizer=self.tokenizer.detokenizer,
            stops=StopStringMatcher(params.stop),
            prompt_tokens=len(tokens),
        )
        self._uids[job.id] = uid
        self._stats.prompt_tokens += len(tokens)

    def cancel(self, job_id: str) -> bool:
        uid = self._uids.pop(job_id, None)
        if uid is None:
            return False
        self.generator.remove([uid])
        del self._sequences[uid]
        return True

    def has_work(self) -> bool:
        return bool(self._sequences)

    # --- generation ---------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Run batch steps for up to ``budget_s``, coalescing each job's text.

        Returns early once some job produced its first visible text, so time
        to first token does not wait for the budget. (Not its first token: a
        streaming detokenizer may hold that token's text back until the next.)
        """
        events = Events(deltas=[], finished=[], failed=[])
        touched: set[int] = set()
        deadline = time.perf_counter() + budget_s
        while self._sequences:
            _, responses = self.generator.next()
            first_text = False
            stopped: list[int] = []
            for r in responses:
                seq = self._sequences.get(r.uid)
                if seq is None:
                    continue
                seq.completion_tokens += 1
                seq.pending_tokens += 1
                self._stats.generation_tokens += 1
                if r.finish_reason != "stop":  # an EOS token is not part of the text
                    seq.detokenizer.add_token(r.token)
                if r.finish_reason is not None:
                    seq.detokenizer.finalize()
                text, hit_stop = seq.stops.feed(seq.detokenizer.last_segment)
                seq.pending_text.append(text)
                if text and not seq.sent_text:
                    seq.sent_text = first_text = True
                if hit_stop:
                    if r.finish_reason is None:
                        stopped.append(r.uid)
                    self._finish(r.uid, "stop", events)
                elif r.finish_reason is not None:
                    seq.pending_text.append(seq.stops.flush())
                    self._finish(r.uid, r.finish_reason, events)  # type: ignore[arg-type]
                else:
                    touched.add(r.uid)
            if stopped:
                self.generator.remove(stopped)
            if first_text or time.perf_counter() >= deadline:
                break
        for uid in touched:
            seq = self._sequences.get(uid)
            if seq is not None and seq.pending_tokens:
                events.deltas.append(
                    Delta(seq.job_id, "".join(seq.pending_text), seq.pending_tokens)
                )
                seq.pending_text.clear()
                seq.pending_tokens = 0
        return events

    def _finish(self, uid: int, reason: str, events: Events) -> None:
        seq = self._sequences.pop(uid)
        del self._uids[seq.job_id]
        self._stats.requests_finished += 1
        events.finished.append(
            Finished(
                id=seq.job_id,
                finish_reason=reason,  # type: ignore[arg-type]
                usage=Usage(seq.prompt_tokens, seq.completion_tokens),
                text="".join(seq.pending_text),
            )
        )

    def stats(self) -> WorkerStats:
        self._stats.active = len(self._sequences)
        return self._stats
