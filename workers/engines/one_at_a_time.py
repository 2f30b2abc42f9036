"""Jobs served one at a time, in arrival order: the bookkeeping shared by the
engines that do not batch (VLM, Kokoro, Flux). Each keeps its own job type;
this keeps which one runs and which wait, and answers cancel and stats."""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

from protocol.messages import WorkerStats


class HasJobId(Protocol):
    @property
    def job_id(self) -> str: ...


JobT = TypeVar("JobT", bound=HasJobId)


class OneAtATime(Generic[JobT]):
    def __init__(self) -> None:
        self.running: JobT | None = None
        self.waiting: deque[JobT] = deque()

    def add(self, job: JobT) -> None:
        self.waiting.append(job)

    def start_next(self) -> JobT | None:
        """When none runs, the first waiting job becomes the running one and
        is returned, for its engine to start it; otherwise None."""
        if self.running is None and self.waiting:
            self.running = self.waiting.popleft()
            return self.running
        return None

    def finish(self) -> None:
        self.running = None

    def cancel(self, job_id: str) -> JobT | None:
        """Drop the job, running or waiting; it, for its engine to clean up."""
        if self.running is not None and self.running.job_id == job_id:
            job, self.running = self.running, None
            return job
        for job in self.waiting:
            if job.job_id == job_id:
                self.waiting.remove(job)
                return job
        return None

    def clear(self) -> JobT | None:
        """Drop every job; the one that was running, for its engine to clean up."""
        job, self.running = self.running, None
        self.waiting.clear()
        return job

    def has_work(self) -> bool:
        return self.running is not None or bool(self.waiting)

    def count(self, stats: WorkerStats) -> WorkerStats:
        """``stats`` with the running and waiting jobs counted in."""
        stats.active = int(self.running is not None)
        stats.queued = len(self.waiting)
        return stats
