"""Vision-language models on mlx-vlm: chat with images.

mlx-vlm's own API end to end: ``mlx_vlm.load`` (model + processor),
``mlx_vlm.prompt_utils.apply_chat_template`` (the model's template, with an
image marker per image), ``mlx_vlm.utils.prepare_inputs`` (the processor:
image patches, image tokens) and ``mlx_vlm.stream_generate`` (prefill with the
vision tower, then one token at a time). Each ``step`` advances the running
generator for its time budget only, so cancels and heartbeats stay timely.

One request decodes at a time; others wait in a FIFO queue (mlx-vlm's own
batching is out of scope here). Chat only: ``/v1/completions``, tools,
logprobs and response_format are refused with a 400 naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from protocol.config import ModelConfig
from protocol.messages import (
    ChatJob,
    ChatMessage,
    Events,
    Finished,
    FinishReason,
    Job,
    SamplingParams,
    Usage,
    WorkerStats,
)
from workers.engine import JobError, engine_options, room_left
from workers.engines.image_files import decode_image
from workers.engines.one_at_a_time import OneAtATime
from workers.engines.text_output import Accepted, TextOutput
from workers.weights import local_or_hub

log = structlog.get_logger()


class VLMOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of a ``vlm`` model."""

    # max_tokens when the request gives none (always capped by the context).
    default_max_tokens: int = 4096
    # Defaults to the language model's max_position_embeddings.
    context_length: int | None = None
    trust_remote_code: bool = False


@dataclass
class _Job:
    inputs: dict[str, Any]  # prepare_inputs' output: input_ids, pixel_values, ...
    params: SamplingParams
    max_tokens: int
    # Its text pipeline: stop strings, pending text (mlx-vlm decodes the tokens).
    output: TextOutput
    results: Iterator[Any] | None = None  # stream_generate, once started

    @property
    def job_id(self) -> str:
        return self.output.job_id


class VLMEngine:
    family = "vlm"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, VLMOptions)
        self._jobs: OneAtATime[_Job] = OneAtATime()
        self._stats = WorkerStats()

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        from mlx_vlm import load

        self.model, self.processor = load(
            local_or_hub(self.config), trust_remote_code=self.options.trust_remote_code
        )
        text_config = getattr(self.model.config, "text_config", None)
        self.context_length = (
            self.options.context_length
            or getattr(text_config, "max_position_embeddings", None)
            or 4096
        )

    # --- jobs ---------------------------------------------------------------

    def submit(self, job: Job) -> Events | None:
        if not isinstance(job, ChatJob):
            raise JobError(
                f"model {self.config.name!r} is a vision model: use /v1/chat/completions",
                param="prompt",
            )
        self._check_params(job)
        images = [
            decode_image(
                data, what=f"an image of messages[{i}]", param=f"messages[{i}].content"
            ).convert("RGB")
            for i, m in enumerate(job.messages)
            for data in m.images
        ]
        inputs = self._prepare(job.messages, images)
        prompt_tokens = int(inputs["input_ids"].size)
        if job.count_only:
            usage = Usage(prompt_tokens, 0)
            finished = Finished(job.id, "stop", usage, context_length=self.context_length)
            return Events(finished=[finished])
        room = room_left(
            self.context_length,
            prompt_tokens,
            " (images included)",
            max_prompt_tokens=self.config.max_prompt_tokens,
        )
        params = job.params
        self._jobs.add(
            _Job(
                inputs=inputs,
                params=params,
                max_tokens=min(params.max_tokens or self.options.default_max_tokens, room),
                output=TextOutput(job.id, prompt_tokens=prompt_tokens, stop=params.stop),
            )
        )
        return None

    def _check_params(self, job: ChatJob) -> None:
        params = job.params
        refused = {
            "tools": bool(job.tools),
            "logprobs": params.logprobs,
            "response_format": params.json_schema is not None,
        }
        for field, present in refused.items():
            if present:
                raise JobError(f"'{field}' is not supported by vision models yet", param=field)
        for message in job.messages:
            if message.tool_calls or message.role == "tool":
                raise JobError("vision models do not take tool calls", param="messages")

    def _prepare(self, messages: list[ChatMessage], images: list[Any]) -> dict[str, Any]:
        from mlx_vlm.prompt_utils import apply_chat_template
        from mlx_vlm.utils import prepare_inputs, should_add_special_tokens

        chat: list[dict[str, Any]] = []
        for m in messages:
            if m.images:
                parts: list[dict[str, Any]] = [{"type": "image"} for _ in m.images]
                parts.append({"type": "text", "text": m.content or ""})
                chat.append({"role": m.role, "content": parts})
            else:
                chat.append({"role": m.role, "content": m.content or ""})
        try:
            prompt = apply_chat_template(
                self.processor, self.model.config, chat, num_images=len(images)
            )
        except Exception as exc:  # jinja raises TemplateError, ValueError...
            raise JobError(f"the model's chat template rejected the messages: {exc}") from exc
        inputs = prepare_inputs(
            self.processor,
            images=images or None,
            prompts=prompt,
            image_token_index=getattr(self.model.config, "image_token_index", None),
            # What stream_generate does when it prepares the inputs itself.
            add_special_tokens=should_add_special_tokens(
                self.model.config.model_type, self.processor
            ),
        )
        return dict(inputs)

    def cancel(self, job_id: str) -> bool:
        job = self._jobs.cancel(job_id)
        self._close(job)
        return job is not None

    def has_work(self) -> bool:
        return self._jobs.has_work()

    def stats(self) -> WorkerStats:
        return self._jobs.count(self._stats)

    # --- generation ---------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Decode the running job for up to ``budget_s`` (its prefill, with the
        vision tower, may take longer), returning early at its first text."""
        events = Events(deltas=[], finished=[], failed=[])
        deadline = time.perf_counter() + budget_s
        while time.perf_counter() < deadline:
            job = self._jobs.running
            if job is None:
                job = self._jobs.start_next()
                if job is None:
                    break
                job.results = self._start(job)
            accepted = self._advance(job)
            if accepted.finished is not None:
                events.finished.append(accepted.finished)
                self._close(job)
                self._jobs.finish()
                self._stats.requests_finished += 1
            if accepted.first_text:
                break
        running = self._jobs.running
        if running is not None and (delta := running.output.delta()) is not None:
            events.deltas.append(delta)
        return events

    def _start(self, job: _Job) -> Iterator[Any]:
        from mlx_vlm import stream_generate

        params = job.params
        inputs = dict(job.inputs)
        extra = {
            k: v
            for k, v in inputs.items()
            if k not in ("input_ids", "pixel_values", "attention_mask")
        }
        self._stats.prompt_tokens += job.output.prompt_tokens
        return stream_generate(
            self.model,
            self.processor,  # type: ignore[arg-type]
            "",
            input_ids=inputs["input_ids"],
            pixel_values=inputs.get("pixel_values"),
            mask=inputs.get("attention_mask"),
            max_tokens=job.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or None,
            min_p=params.min_p,
            seed=params.seed,
            repetition_penalty=(
                params.repetition_penalty if params.repetition_penalty != 1.0 else None
            ),
            presence_penalty=params.presence_penalty or None,
            frequency_penalty=params.frequency_penalty or None,
            logit_bias=dict(params.logit_bias) or None,
            **extra,
        )

    def _advance(self, job: _Job) -> Accepted:
        """The next result of ``job``'s ``stream_generate`` through its text pipeline."""
        assert job.results is not None
        output = job.output
        result = next(job.results, None)
        if result is None:  # the generator ended without a final result
            return output.accept_text("", 0, "length")
        # Its last result repeats the last count, or counts the EOS token.
        new_tokens = max(0, result.generation_tokens - output.completion_tokens)
        self._stats.generation_tokens += new_tokens
        # None at max_tokens too: stream_generate's final (finalizing) result is to come.
        reason: FinishReason | None = None
        if result.finish_reason is not None:
            reason = "stop" if result.finish_reason == "stop" else "length"
        return output.accept_text(result.text, new_tokens, reason)

    @staticmethod
    def _close(job: _Job | None) -> None:
        if job is not None and job.results is not None:
            close = getattr(job.results, "close", None)
            if close is not None:
                close()
            job.results = None
