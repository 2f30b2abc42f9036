"""The gateway's connection to one model process.

A DEALER socket connected to the worker's ROUTER endpoint carries jobs out
and :class:`~protocol.messages.Events` back; one receive task routes each
event to the waiting request. Liveness comes from three signals:

- the socket monitor: a killed worker's connection drops at once, and every
  request it held ends with a 503 immediately, never a hang;
- the heartbeat: a :class:`Ping` every ``heartbeat_interval``; the Pong says
  loading/ready/failed (with the cause) and carries an ``instance`` id, so a
  replaced process is noticed even if no disconnect was seen;
- the supervisor's status (restarting, failed), pushed to the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import cast

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from gateway.errors import APIError
from gateway.job_stream import JobStream
from protocol.config import GatewaySettings, ModelConfig
from protocol.framing import Encoder, FrameError, from_worker_decoder
from protocol.messages import (
    Cancel,
    Events,
    Finished,
    Goodbye,
    Job,
    JobFailed,
    Ping,
    Pong,
    Restart,
    SupervisorStatus,
)

log = structlog.get_logger()

# How long a lost connection's requests wait for frames still queued behind
# the disconnect event, unless the worker's Goodbye says nothing more is coming.
# Well under a second: a crashed worker's requests must fail within one.
DISCONNECT_GRACE_S = 0.5


class WorkerClient:
    def __init__(
        self, model: ModelConfig, settings: GatewaySettings, ctx: zmq.asyncio.Context
    ) -> None:
        self.model = model
        self.settings = settings
        self._ctx = ctx
        self._encoder = Encoder()
        self._decoder = from_worker_decoder()
        self._jobs: dict[str, JobStream] = {}
        self._ids = itertools.count()
        self._seq = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = False
        self.pong: Pong | None = None
        self.last_pong = 0.0
        self.supervisor: SupervisorStatus | None = None
        self._goodbye = asyncio.Event()
        self._goodbye_from = ""  # the instance of the last Goodbye

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # Not ZMQ_IMMEDIATE: with it, frames the worker sent but this loop had
        # not yet read when the connection dropped are discarded, so a busy
        # gateway lost a draining worker's last Finished and its Goodbye (and
        # failed a request that had completed). Without it, what is sent while
        # the worker restarts waits for the next process instead; that is made
        # harmless: jobs are only sent to a connected, ready worker, a Restart
        # names the process it means, and events for a job this client no
        # longer holds get a Cancel (see _dispatch).
        self._sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )
        self._sock.connect(self.model.endpoint)
        for coro in (self._receive(), self._watch_connection(), self._heartbeat()):
            self._tasks.append(asyncio.create_task(coro))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(503, "gateway_shutdown", "the gateway is shutting down")
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    # --- state --------------------------------------------------------------

    @property
    def state(self) -> str:
        """ready | loading | failed | restarting | unresponsive | down."""
        if self.connected and self.pong is not None:
            if time.monotonic() - self.last_pong > self.settings.heartbeat_timeout:
                return "unresponsive"
            return self.pong.state
        if self.connected:
            return "loading"
        if self.supervisor is not None and self.supervisor.state in ("restarting", "failed"):
            return self.supervisor.state
        return "down"

    def unavailable_reason(self) -> str:
        name, state = self.model.name, self.state
        if self.pong is not None and self.pong.error and state == "failed":
            return f"model {name!r} is unavailable: {self.pong.error}"
        if self.supervisor is not None and state in ("restarting", "failed"):
            detail = f": {self.supervisor.message}" if self.supervisor.message else ""
            return f"model {name!r} is {state}{detail}"
        if state == "down":
            return f"model {name!r} is unavailable: its worker is not running"
        return f"model {name!r} is {state}"

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    # --- jobs ---------------------------------------------------------------

    def new_job_id(self) -> str:
        return f"{self.model.name}-{next(self._ids)}"

    def submit(self, job: Job) -> JobStream:
        """Send a job; raise 503 if the worker cannot take it, 429 if full."""
        (stream,) = self.submit_all([job])
        return stream

    def submit_all(self, jobs: list[Job]) -> list[JobStream]:
        """Send the jobs of one request (its ``n`` choices): all of them or none."""
        if self.state != "ready":
            raise APIError(503, self.unavailable_reason(), code="model_not_ready")
        if len(self._jobs) + len(jobs) > self.model.max_pending:
            raise APIError(
                429,
                f"model {self.model.name!r} has {len(self._jobs)} requests in flight "
                f"(limit {self.model.max_pending}); retry shortly",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        streams: list[JobStream] = []
        for job in jobs:
            stream = JobStream(job.id, self.settings.request_timeout, self.release)
            self._jobs[job.id] = stream
            if not self._send_now(self._encoder.encode(job)):
                del self._jobs[job.id]
                for sent in streams:
                    sent.close()
                raise APIError(503, self.unavailable_reason(), code="model_not_ready")
            streams.append(stream)
        return streams

    def restart(self, *, graceful: bool) -> int | None:
        """Ask the model process to drain (or stop now) and exit, so its
        supervisor starts a fresh one; the pid it had. 503 if unreachable."""
        instance = self.pong.instance if self.pong is not None else None
        restart = Restart(graceful, instance)
        if not self.connected or not self._send_now(self._encoder.encode(restart)):
            raise APIError(503, self.unavailable_reason(), code="model_not_ready")
        return self.pong.pid if self.pong is not None else None

    def release(self, stream: JobStream) -> None:
        """Forget a job its request is done with; one the worker has not ended
        yet (it is still held here) is cancelled in the worker."""
        if self._jobs.pop(stream.id, None) is not None:
            self._send_now(self._encoder.encode(Cancel(stream.id)))

    def _send_now(self, frame: bytes) -> bool:
        """Send without waiting; False if it cannot be queued (the queue is full).

        What is sent while the worker is disconnected waits for its next
        process: jobs and Restart are only sent to a connected worker, and a
        late Ping or Cancel is harmless.

        A NOBLOCK send on a zmq.asyncio socket completes its future at once.
        It must go through that socket, not a sync shadow of it: a send can
        consume the edge-triggered readiness of the socket's fd, and only the
        asyncio socket knows to re-check for its waiting receive.
        """
        sent = cast("asyncio.Future[object]", self._sock.send(frame, zmq.NOBLOCK))
        return sent.done() and sent.exception() is None

    def _fail_all(self, status: int, code: str, message: str) -> None:
        jobs, self._jobs = self._jobs, {}
        for stream in jobs.values():
            stream.put(JobFailed(stream.id, status, code, message))
        if jobs:
            log.warning("failed in-flight requests", model=self.model.name, count=len(jobs))

    # --- background tasks ---------------------------------------------------

    async def _receive(self) -> None:
        while True:
            frame = await self._sock.recv()
            try:
                message = self._decoder.decode(frame)
            except FrameError as exc:
                log.error("dropped bad frame", model=self.model.name, error=str(exc))
                continue
            match message:
                case Events():
                    self._dispatch(message)
                case Pong():
                    self._on_pong(message)
                case Goodbye(instance=instance):
                    self._goodbye_from = instance
                    self._goodbye.set()

    def _dispatch(self, events: Events) -> None:
        jobs = self._jobs
        orphans: set[str] = set()
        for delta in events.deltas:
            if (stream := jobs.get(delta.id)) is not None:
                stream.put(delta)
            else:
                orphans.add(delta.id)
        for output in events.outputs:
            if (stream := jobs.get(output.id)) is not None:
                stream.put(output)
            else:
                orphans.add(output.id)
        for end in _ends(events):
            if (stream := jobs.pop(end.id, None)) is not None:
                stream.put(end)
                orphans.discard(end.id)
        # Nobody waits for these (a job that reached a new process after its
        # request had failed, or one cancelled while its tokens were on the
        # way): stop the worker spending time on them.
        for job_id in orphans:
            self._send_now(self._encoder.encode(Cancel(job_id)))

    def _on_pong(self, pong: Pong) -> None:
        if self.pong is not None and pong.instance != self.pong.instance:
            self._worker_lost(f"its process was replaced (pid {self.pong.pid} -> {pong.pid})")
        if self.pong is None or self.pong.state != pong.state:
            log.info("worker state", model=self.model.name, state=pong.state, pid=pong.pid)
        self.pong = pong
        self.last_pong = time.monotonic()

    def _worker_lost(self, why: str) -> None:
        self._fail_all(
            503,
            "worker_died",
            f"the worker for model {self.model.name!r} stopped while serving this "
            f"request ({why}); it is being restarted",
        )

    async def _watch_connection(self) -> None:
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.pong = None  # a new connection: state unknown until its pong
                self._send_ping()
            elif event == zmq.EVENT_DISCONNECTED:
                was = self.connected
                lost = self.pong.instance if self.pong is not None else None
                self.connected = False
                self.pong = None
                if was:
                    log.warning("worker disconnected", model=self.model.name)
                # The monitor is a separate socket: its event can overtake the
                # worker's last messages (a drained job's Finished), already
                # queued on the data socket. A clean exit ends with a Goodbye
                # behind them; a crash has none, so wait a moment at most.
                # asyncio.timeout, not wait_for: on 3.11, wait_for drops a
                # cancel that lands as its inner wait ends, and the gateway's
                # shutdown then hung on this task.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DISCONNECT_GRACE_S):
                        await self._said_goodbye(lost)
                self._goodbye.clear()
                self._worker_lost("connection lost")

    async def _said_goodbye(self, instance: str | None) -> None:
        """Until the Goodbye of ``instance`` (any, if unknown) has been read:
        one a previous process sent too late to count must not count now."""
        while not (self._goodbye.is_set() and instance in (None, self._goodbye_from)):
            self._goodbye.clear()
            await self._goodbye.wait()

    async def _heartbeat(self) -> None:
        while True:
            self._send_ping()
            if self.state == "unresponsive" and self._jobs:
                self._fail_all(
                    503,
                    "worker_unresponsive",
                    f"the worker for model {self.model.name!r} has not answered for "
                    f"{self.settings.heartbeat_timeout:.0f}s",
                )
            await asyncio.sleep(self.settings.heartbeat_interval)

    def _send_ping(self) -> None:
        self._send_now(self._encoder.encode(Ping(next(self._seq))))


def _ends(events: Events) -> Iterator[Finished | JobFailed]:
    yield from events.finished
    yield from events.failed
