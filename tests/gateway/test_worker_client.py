"""WorkerClient bookkeeping without a worker process: limits, timeouts, cancel;
and against a stand-in worker socket, what reaches the gateway when a worker exits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import zmq.asyncio

from gateway.errors import APIError
from gateway.job_stream import JobOutput, JobStream
from gateway.worker_client import WorkerClient
from protocol.config import GatewaySettings, ModelConfig
from protocol.framing import Encoder, to_worker_decoder
from protocol.messages import (
    Cancel,
    CompletionJob,
    Delta,
    Events,
    Finished,
    Goodbye,
    Ping,
    Pong,
    Restart,
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
        self._decode = to_worker_decoder().decode

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


async def read_to_end(stream: JobStream) -> list[JobOutput]:
    return [event async for event in stream.events()]


async def test_requests_beyond_max_pending_are_429_with_retry_after(
    ctx: zmq.asyncio.Context,
) -> None:
    client = ready_client(ctx, max_pending=2)
    await client.submit(job(1))
    await client.submit(job(2))
    with pytest.raises(APIError) as err:
        await client.submit(job(3))
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"


async def test_events_reach_their_stream_and_the_end_releases_it(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    stream = await client.submit(job(1))
    client._dispatch(Events(deltas=[Delta("j1", "ab", 2)]))
    client._dispatch(Events(finished=[Finished("j1", "length", Usage(1, 3), text="c")]))
    (batch,) = [batch async for batch in stream.batches()]
    assert [type(e) for e in batch] == [Delta, Finished]
    assert client.in_flight == 0
    stream.close()
    assert not any(isinstance(m, Cancel) for m in client.sent)


async def test_a_request_over_its_time_limit_gets_504_and_is_cancelled_in_the_worker(
    ctx: zmq.asyncio.Context,
) -> None:
    client = ready_client(ctx, request_timeout=0.05)
    stream = await client.submit(job(1))
    with pytest.raises(APIError) as failure:
        await read_to_end(stream)
    assert failure.value.status == 504
    assert client.sent[-1] == Cancel("j1")


async def test_a_lost_worker_fails_every_request_it_held(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    streams = [await client.submit(job(i)) for i in (1, 2)]
    client._worker_lost("connection lost")
    for stream in streams:
        with pytest.raises(APIError) as failure:
            await read_to_end(stream)
        assert failure.value.status == 503
        assert "'m'" in failure.value.message and "connection lost" in failure.value.message


async def test_not_ready_is_503_naming_the_state(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    client.pong = Pong(0, "i", 1, "m", "llm", "loading", 0, WorkerStats())
    with pytest.raises(APIError) as err:
        await client.submit(job(1))
    assert err.value.status == 503 and "loading" in err.value.message


async def test_events_for_a_job_nobody_holds_are_answered_with_a_cancel(
    ctx: zmq.asyncio.Context,
) -> None:
    """A job that waited in the socket queue for the next process (its request
    already failed) must not run for nobody."""
    client = ready_client(ctx)
    stream = await client.submit(job(1))
    client._dispatch(Events(deltas=[Delta("j1", "a", 1), Delta("gone", "b", 1)]))
    client._dispatch(Events(finished=[Finished("done-elsewhere", "stop", Usage(1, 1))]))
    assert client.sent[1:] == [Cancel("gone")]
    stream.close()


async def test_a_restart_names_the_process_it_is_meant_for(ctx: zmq.asyncio.Context) -> None:
    client = ready_client(ctx)
    client.restart(graceful=True)
    assert client.sent == [Restart(True, "i")]


class StandInWorker:
    """A worker's ROUTER socket, driven by the test."""

    def __init__(self, ctx: zmq.asyncio.Context) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.encode = Encoder().encode
        self.decode = to_worker_decoder().decode
        self.peer = b""

    async def receive(self) -> object:
        self.peer, frame = await self.sock.recv_multipart()
        return self.decode(frame)

    async def send(self, message: Events | Pong | Goodbye) -> None:
        await self.sock.send_multipart([self.peer, self.encode(message)])

    def exit(self) -> None:
        self.sock.close(linger=1000)


async def test_a_busy_gateway_still_reads_what_a_worker_sent_just_before_exiting(
    ctx: zmq.asyncio.Context,
) -> None:
    """A draining worker sends its last Finished and its Goodbye, then exits
    while the gateway's loop is busy elsewhere: the request still completes,
    it does not fail with "connection lost" (it did with ZMQ_IMMEDIATE)."""
    worker = StandInWorker(ctx)
    model = ModelConfig("m", "llm", "/x", worker.endpoint)
    client = WorkerClient(model, GatewaySettings(), ctx)
    await client.start()
    try:
        ping = await worker.receive()
        assert isinstance(ping, Ping)
        await worker.send(Pong(ping.seq, "i", 1, "m", "llm", "ready", 0, WorkerStats()))
        while client.state != "ready":  # noqa: ASYNC110 - a property, nothing to await
            await asyncio.sleep(0.01)
        stream = await client.submit(job(1))
        while not isinstance(await worker.receive(), CompletionJob):
            pass

        await worker.send(Events(finished=[Finished("j1", "length", Usage(1, 2), text="ab")]))
        await worker.send(Goodbye("i"))
        worker.exit()
        time.sleep(0.3)  # noqa: ASYNC251 - the loop is busy: the disconnect lands before any read

        (end,) = await asyncio.wait_for(read_to_end(stream), 5)
        assert isinstance(end, Finished) and end.text == "ab"
    finally:
        await client.close()


async def test_a_request_that_stops_reading_cancels_its_job_in_the_worker(
    ctx: zmq.asyncio.Context,
) -> None:
    client = ready_client(ctx)
    stream = await client.submit(job(1))
    client._dispatch(Events(deltas=[Delta("j1", "a", 1)]))
    events = stream.events()
    assert await anext(events) == Delta("j1", "a", 1)
    await events.aclose()  # the client hung up
    assert client.sent[-1] == Cancel("j1") and client.in_flight == 0
