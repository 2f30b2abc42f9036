"""The interface every model family's engine implements for the worker runtime.

The runtime owns sockets, heartbeats, cancellation and error reporting; an
engine only loads its model, accepts jobs and advances them one step at a
time. ``step`` must return within a few milliseconds to a few hundred (one
batched decode, one prefill chunk) so cancels and heartbeats stay timely.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import msgspec

from protocol.config import ModelConfig
from protocol.messages import Events, Job, JobFailed, WorkerStats

OptionsT = TypeVar("OptionsT")


class JobError(Exception):
    """A job the engine refuses; becomes a :class:`~protocol.messages.JobFailed`."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "invalid_request_error",
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


class EngineDeadError(Exception):
    """The engine's own state broke (not a job's fault): every job fails with a
    503 ``engine_dead`` and the process exits, for its supervisor to restart it.

    Any exception escaping :meth:`Engine.step` or :meth:`Engine.cancel` means
    this; :meth:`Engine.submit` raises it where it had begun to change its
    state when something failed (named vLLM's way)."""


class Engine(Protocol):
    family: str

    def load(self) -> None:
        """Load weights; may take minutes. Raise with a clear message on failure."""

    def submit(self, job: Job) -> Events | None:
        """Accept a job, or answer it at once: the Events returned (a token
        count, a voice list) are sent without waiting for a step, and a job
        they finish is done. Raise :class:`JobError` to refuse the job.

        Check and prepare the job before changing any state of the engine's:
        any other exception then fails this job alone (see the runtime). Raise
        :class:`EngineDeadError` for a failure after the state began to change.
        """

    def cancel(self, job_id: str) -> bool:
        """Drop a job and free its resources; False if it was unknown."""

    def has_work(self) -> bool:
        """Whether :meth:`step` has anything to do."""

    def step(self, budget_s: float) -> Events:
        """Advance every job for about ``budget_s`` seconds; report what happened.
        A job's own failure is a ``JobFailed`` in the Events; an exception
        raised here is the engine's death (:class:`EngineDeadError`)."""

    def stats(self) -> WorkerStats: ...


def unprocessable(job_id: str, model: str, exc: BaseException) -> JobFailed:
    """A job that failed for a reason no check foresaw, the engine intact.

    A 400 naming the model and the cause: not a 500 (nothing crashed; the
    worker serves on) and not a 503 (the same request would fail the same
    way again)."""
    message = f"model {model!r} could not process this request: {type(exc).__name__}: {exc}"
    return JobFailed(job_id, 400, "unprocessable_request", message)


def engine_options(model: ModelConfig, options_type: type[OptionsT]) -> OptionsT:
    """The model's ``[models.options]`` as its engine's Struct; a bad key fails startup."""
    try:
        return msgspec.convert(model.options, options_type)
    except msgspec.ValidationError as exc:
        raise ValueError(f"model {model.name!r}: invalid options: {exc}") from exc


def room_left(
    context_length: int, prompt_tokens: int, what: str = "", max_prompt_tokens: int | None = None
) -> int:
    """Tokens the context leaves for generation, or the OpenAI context-length
    400; a prompt over the model's ``max_prompt_tokens`` is a 400 too."""
    if max_prompt_tokens is not None and prompt_tokens > max_prompt_tokens:
        raise JobError(
            f"this model takes prompts of at most {max_prompt_tokens} tokens "
            f"(max_prompt_tokens), but the prompt has {prompt_tokens} tokens{what}",
            code="prompt_too_long",
        )
    room = context_length - prompt_tokens
    if room <= 0:
        raise JobError(
            f"this model's maximum context length is {context_length} tokens, "
            f"but the prompt has {prompt_tokens} tokens{what}",
            code="context_length_exceeded",
        )
    return room
