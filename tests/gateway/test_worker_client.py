"""WorkerClient bookkeeping without a worker process: limits, timeouts, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq.asyncio

from gateway.errors import APIError
from gateway.worker_client import WorkerClient
from protocol.config import GatewaySettings, ModelConfig
from protocol.framing import worker_codec
from protocol.messages import (
    Cancel,
    CompletionJob,
    Delta,
    Events,
    Finished,
    JobFailed,
    Pong,
    SamplingParams,
    Usage,
    WorkerStats,
)


class RecordingClient(WorkerClient):
    """A client that believes its worker is up and records what it sends."""

    def __init__(self, ctx: zmq.asyncio.Context, max_pending: int, request_timeout: float) -> None:
        model = ModelConfig("m", "llm", "/x", "tcp://127.0.0.1:1", max_pending=max_pending)
        super().__init__(model, GatewaySettings(request_timeout=request_timeout), ctx)
        self.connected = True
        self.pong = Pong(0, "i", 1, "m", "llm", "ready", 0, WorkerStats())
        self.last_pong = time.monotonic()
        self.sent: list[object] = []
        self._decode = worker_codec().decode

    def _send_now(self, frame: bytes) -> bool:
        self.sent.append(self._decode(frame))
        return True


@pytest.fixture
def ctx() -> Iterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.term()


def ready_client(
    ctx: zmq.asyncio.Context, max_pending: int = 2, request_timeout: float = 600.0
) -> RecordingClient:
    return RecordingClient(ctx, max_pending, request_timeout)


def job(i: int) -> CompletionJob:
    return CompletionJob(f"j{i}", "x", SamplingParams())


async def test_requests_beyond_max_pending_are_429_with_retry_after(
    ctx: zmq.asyncio.Context,
) -> None:
    client = ready_client(ctx, max_pending=2)
    client.submit(job(1))
    client.submit(job(2))
    with pytest.raises(APIError) as err:
        client.submit(job(3))
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"


async def test_events_reach_their_stream_and_the_end_releases_it(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    stream = client.submit(job(1))
    client._dispatch(Events(deltas=[Delta("j1", "ab", 2)]))
    client._dispatch(Events(finished=[Finished("j1", "length", Usage(1, 3), text="c")]))
    batch = await stream.next_batch()
    assert [type(e) for e in batch] == [Delta, Finished]
    assert client.in_flight == 0
    stream.close()
    assert not any(isinstance(m, Cancel) for m in client.sent)


async def test_a_request_over_its_time_limit_gets_504_and_is_cancelled_in_the_worker(
    ctx: zmq.asyncio.Context,
) -> None:
    client = ready_client(ctx, request_timeout=0.05)
    stream = client.submit(job(1))
    (failure,) = await stream.next_batch()
    assert isinstance(failure, JobFailed) and failure.status == 504
    stream.close()
    assert client.sent[-1] == Cancel("j1")


async def test_a_lost_worker_fails_every_request_it_held(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    streams = [client.submit(job(i)) for i in (1, 2)]
    client._worker_lost("connection lost")
    for stream in streams:
        (failure,) = await stream.next_batch()
        assert isinstance(failure, JobFailed) and failure.status == 503
        assert "'m'" in failure.message and "connection lost" in failure.message


async def test_not_ready_is_503_naming_the_state(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    client.pong = Pong(0, "i", 1, "m", "llm", "loading", 0, WorkerStats())
    with pytest.raises(APIError) as err:
        client.submit(job(1))
    assert err.value.status == 503 and "loading" in err.value.message
