"""The interface every model family's engine implements for the worker runtime.

The runtime owns sockets, heartbeats, cancellation and error reporting; an
engine only loads its model, accepts jobs and advances them one step at a
time. ``step`` must return within a few milliseconds to a few hundred (one
batched decode, one prefill chunk) so cancels and heartbeats stay timely.
"""

from __future__ import annotations

from typing import Protocol

from protocol.messages import Events, Job, WorkerStats


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


class Engine(Protocol):
    family: str

    def load(self) -> None:
        """Load weights; may take minutes. Raise with a clear message on failure."""

    def submit(self, job: Job) -> None:
        """Accept a job (raise :class:`JobError` to refuse it)."""

    def cancel(self, job_id: str) -> bool:
        """Drop a job and free its resources; False if it was unknown."""

    def has_work(self) -> bool:
        """Whether :meth:`step` has anything to do."""

    def step(self, budget_s: float) -> Events:
        """Advance every job for about ``budget_s`` seconds; report what happened."""

    def reset(self) -> None:
        """Drop every job (after a failed step) and be ready for new ones."""

    def stats(self) -> WorkerStats: ...
