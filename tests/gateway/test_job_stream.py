"""gateway/job_stream.py: one job's events, read with ``async for``: batched,
ended by Finished, failures raised as APIError, the job released however the
reading ends."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.errors import APIError
from gateway.job_stream import JobOutput, JobStream
from protocol.messages import Delta, Finished, JobFailed, Usage

A, B, C = Delta("j", "a", 1), Delta("j", "b", 1), Delta("j", "c", 1)
END = Finished("j", "stop", Usage(1, 3))


RELEASED: list[JobStream] = []  # what WorkerClient.release is called for


def job_stream(*events: JobOutput | JobFailed, time_limit: float = 600.0) -> JobStream:
    stream = JobStream("j", time_limit, RELEASED.append)
    for event in events:
        stream.put(event)
    return stream


def releases(stream: JobStream) -> int:
    return sum(released is stream for released in RELEASED)


async def test_a_batch_is_everything_queued_up_to_the_jobs_end() -> None:
    stream = job_stream(A, B, END, C)  # nothing after Finished is read
    assert [batch async for batch in stream.batches()] == [[A, B, END]]


async def test_a_slow_reader_gets_fewer_bigger_batches() -> None:
    stream = job_stream(A)
    batches = stream.batches()
    assert await anext(batches) == [A]
    stream.put(B)
    stream.put(C)  # both arrive while the reader is busy
    assert await anext(batches) == [B, C]
    stream.put(END)
    assert await anext(batches) == [END]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)


async def test_events_are_the_batches_one_at_a_time() -> None:
    stream = job_stream(A, B, END)
    assert [event async for event in stream.events()] == [A, B, END]


async def test_a_failure_is_raised_as_the_api_error_it_names() -> None:
    stream = job_stream(A, JobFailed("j", 400, "bad_voice", "no voice 'x'", param="voice"))
    with pytest.raises(APIError) as caught:
        async for _ in stream.events():
            pass
    error = caught.value
    assert (error.status, error.code, error.param, error.message) == (
        400,
        "bad_voice",
        "voice",
        "no voice 'x'",
    )
    assert releases(stream) == 1


async def test_the_requests_time_limit_is_a_504() -> None:
    stream = job_stream(A, time_limit=0)
    with pytest.raises(APIError) as caught:
        async for _ in stream.batches():
            pass
    assert caught.value.status == 504 and caught.value.code == "timeout"


async def test_reading_to_the_end_releases_the_job() -> None:
    stream = job_stream(A)
    events = stream.events()
    assert await anext(events) == A
    assert releases(stream) == 0
    stream.put(END)
    assert [event async for event in events] == [END]
    assert releases(stream) == 1


async def test_a_reader_cancelled_while_waiting_releases_the_job() -> None:
    """A client that hangs up: its handler's task is cancelled mid-wait."""
    stream = job_stream()
    reader = asyncio.create_task(anext(stream.events()))
    await asyncio.sleep(0)  # one turn of the loop: the reader now waits
    assert releases(stream) == 0
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    assert releases(stream) == 1


async def test_a_reader_that_stops_early_releases_the_job() -> None:
    stream = job_stream(A, B)
    async with contextlib.aclosing(stream.events()) as events:
        async for _ in events:
            break
    assert releases(stream) == 1


async def test_started_waits_for_the_first_event_and_leaves_it_to_be_read() -> None:
    stream = job_stream()
    started = asyncio.create_task(stream.started())
    await asyncio.sleep(0)
    assert not started.done()
    stream.put(A)
    await started
    stream.put(END)
    assert [event async for event in stream.events()] == [A, END]


async def test_started_raises_a_refused_job_and_releases_it() -> None:
    stream = job_stream(JobFailed("j", 400, None, "empty text", param="input"))
    with pytest.raises(APIError) as caught:
        await stream.started()
    assert caught.value.param == "input"
    assert releases(stream) == 1
