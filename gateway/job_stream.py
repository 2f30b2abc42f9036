"""What one request receives from its worker: one job's events, read once, in order.

:meth:`WorkerClient.submit <gateway.worker_client.WorkerClient.submit>` gives
each job a :class:`JobStream` and puts on it every event the worker sends for
the job. A handler reads it with ``async for``, one of two ways:

- :meth:`JobStream.batches`: at each wake-up, everything already queued, as one
  list, so a slow reader sends several tokens in one SSE chunk instead of
  falling behind one chunk per token;
- :meth:`JobStream.events`: the same events one at a time.

Either ends with the job's :class:`~protocol.messages.Finished` (the last event
yielded), raises its failure (the worker's ``JobFailed``, a lost worker's 503,
the request's time limit's 504) as an :class:`~gateway.errors.APIError`, and
releases the job however the reading ends, which cancels it in the worker if
it had not finished (the client left, or the request failed first).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

import structlog

from gateway.errors import APIError
from protocol.messages import Delta, Finished, JobFailed, Output

log = structlog.get_logger()

JobEvent = Delta | Output | Finished | JobFailed
# What a reader gets: a failure is raised instead.
JobOutput = Delta | Output | Finished


def job_failure(failed: JobFailed) -> APIError:
    return APIError(failed.status, failed.message, code=failed.code, param=failed.param)


class JobStream:
    """One job's events. The request's time limit is a timer that puts a 504
    failure into the stream: one timer per request rather than a timeout
    around every wait."""

    def __init__(
        self, job_id: str, time_limit: float, release: Callable[[JobStream], None]
    ) -> None:
        self.id = job_id
        self._release: Callable[[JobStream], None] | None = release
        self._queue: deque[JobEvent] = deque()
        self._arrived = asyncio.Event()
        self._timer = asyncio.get_running_loop().call_later(time_limit, self._expire, time_limit)
        # Told of each event as it arrives (the job's timings, gateway/job_timing.py).
        self.observer: Callable[[JobEvent], None] | None = None

    def put(self, event: JobEvent) -> None:
        self._queue.append(event)
        self._arrived.set()
        if self.observer is not None:
            try:
                self.observer(event)
            except Exception:  # a metrics bug must not stop the worker's receive loop
                log.exception("job observer failed", job=self.id)
                self.observer = None

    def _expire(self, time_limit: float) -> None:
        message = f"the request did not finish within {time_limit:.0f}s"
        self.put(JobFailed(self.id, 504, "timeout", message))

    async def batches(self) -> AsyncIterator[list[JobOutput]]:
        """Each wake-up's events, up to and with the job's Finished."""
        try:
            while True:
                batch = await self._next_batch()
                yield batch
                if isinstance(batch[-1], Finished):
                    return
        finally:
            self.close()

    async def events(self) -> AsyncIterator[JobOutput]:
        """The job's events one at a time, up to and with its Finished."""
        try:
            async for batch in self.batches():
                for event in batch:
                    yield event
        finally:
            self.close()  # now, not when the inner generator is collected

    async def started(self) -> None:
        """Wait for the job's first event, leaving it to be read: a job the
        worker refused raises its APIError here, before a response starts."""
        try:
            await self._wait()
            if isinstance(first := self._queue[0], JobFailed):
                raise job_failure(first)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the job, once; the client cancels it in the worker if it
        has not ended there."""
        self._timer.cancel()
        release, self._release = self._release, None
        if release is not None:
            release(self)

    async def _wait(self) -> None:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()

    async def _next_batch(self) -> list[JobOutput]:
        """At least one event, then all that is already queued, up to the
        first that ends the job; a failure raises."""
        await self._wait()
        batch: list[JobOutput] = []
        while self._queue:
            event = self._queue.popleft()
            if isinstance(event, JobFailed):
                raise job_failure(event)
            batch.append(event)
            if isinstance(event, Finished):
                break
        return batch
