"""The gateway's connection to one model process.

A DEALER socket connected to the worker's ROUTER endpoint carries jobs out
and :class:`~protocol.messages.Events` back; one receive task routes each
event to the waiting request. Liveness comes from three signals:

- the socket monitor: a killed worker's connection drops at once, and every
  request it held ends with a 503 immediately, never a hang;
- the heartbeat: a :class:`Ping` every ``heartbeat_interval``; the Pong says
  loading/ready/failed (with the cause) and carries an ``instance`` id, so a
  replaced process is noticed even if no disconnect was seen;
- the supervisor's status (unloaded, restarting, failed...), from the control link.

A worker silent past its model's ``heartbeat_timeout`` is ``unresponsive``:
its requests fail at once and ``on_hung`` asks its supervisor to kill it.
Before a job is sent to a worker that is not ready, ``on_demand`` may load
it (an ``on_demand`` model) and wait for it (see gateway/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from gateway import worker_state
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.memory import footprint
from gateway.worker_state import Seen, state_of
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
        self._supervisor: SupervisorStatus | None = None
        self.supervisor_at = 0.0  # when its status arrived
        self._goodbye = asyncio.Event()
        self._goodbye_from = ""  # the instance of the last Goodbye
        # Set by the lifecycle manager: a load is under way (requests wait for
        # it); ops drained it (new requests are refused, it stays loaded).
        self.loading = False
        self.held = False
        self.on_demand: Callable[[WorkerClient], Awaitable[None]] | None = None
        self.on_hung: Callable[[WorkerClient, Pong], None] | None = None
        self._hung_reported: str | None = None  # the instance reported hung
        self.last_used = time.monotonic()
        self.processed = 0  # jobs finished since the gateway started
        self.waiting = 0  # requests waiting for the model to load
        self.memory_peak = 0  # largest footprint reported after serving
        self._changed = asyncio.Event()

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
    def supervisor(self) -> SupervisorStatus | None:
        return self._supervisor

    @supervisor.setter
    def supervisor(self, status: SupervisorStatus | None) -> None:
        before = self.state
        self._supervisor, self.supervisor_at = status, time.monotonic()
        if self.state != before:
            self.changed()

    @property
    def loop_age(self) -> float | None:
        """Seconds since the worker's loop last answered a heartbeat."""
        return time.monotonic() - self.last_pong if self.pong is not None else None

    def seen(self) -> Seen:
        now = time.monotonic()
        return Seen(
            connected=self.connected,
            pong=self.pong,
            pong_age=now - self.last_pong,
            supervisor=self._supervisor,
            supervisor_age=now - self.supervisor_at,
            loading=self.loading,
            held=self.held,
            heartbeat_limit=self.model.heartbeat_limit(),
        )

    @property
    def state(self) -> str:
        """See gateway/worker_state.py."""
        return state_of(self.seen())

    def retry_in(self) -> float | None:
        return worker_state.retry_in(self.seen())

    def unavailable(self) -> APIError:
        """The 503 for a request this worker cannot take now, with a
        ``Retry-After`` when it is expected back by itself."""
        seen = self.seen()
        state = state_of(seen)
        retry = worker_state.retry_after(state, seen)
        message = worker_state.reason(self.model.name, state, seen)
        headers = {"Retry-After": retry} if retry is not None else {}
        return APIError(503, message, code="model_not_ready", headers=headers)

    def unavailable_reason(self) -> str:
        seen = self.seen()
        return worker_state.reason(self.model.name, state_of(seen), seen)

    def changed(self) -> None:
        """Wake whatever waits for this worker's state to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    @property
    def idle(self) -> bool:
        stats = self.pong.stats if self.pong is not None else None
        return not self._jobs and (stats is None or stats.active + stats.queued == 0)

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    # --- jobs ---------------------------------------------------------------

    def new_job_id(self) -> str:
        return f"{self.model.name}-{next(self._ids)}"

    async def submit(self, job: Job) -> JobStream:
        """Send a job; raise 503 if the worker cannot take it, 429 if full."""
        (stream,) = await self.submit_all([job])
        return stream

    async def submit_all(self, jobs: list[Job]) -> list[JobStream]:
        """Send the jobs of one request (its ``n`` choices): all of them or none.
        A model that is not loaded may be loaded first (``on_demand``)."""
        if self.state != "ready" and self.on_demand is not None:
            self.waiting += 1
            try:
                await self.on_demand(self)
            finally:
                self.waiting -= 1
        if self.state != "ready":
            raise self.unavailable()
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
                raise self.unavailable()
            streams.append(stream)
        self.last_used = time.monotonic()
        return streams

    def restart(self, *, graceful: bool) -> int | None:
        """Ask the model process to drain (or stop now) and exit, so its
        supervisor starts a fresh one; the pid it had. 503 if unreachable."""
        instance = self.pong.instance if self.pong is not None else None
        restart = Restart(graceful, instance)
        if not self.connected or not self._send_now(self._encoder.encode(restart)):
            raise self.unavailable()
        return self.pong.pid if self.pong is not None else None

    def release(self, stream: JobStream) -> None:
        """Forget a job its request is done with; one the worker has not ended
        yet (it is still held here) is cancelled in the worker."""
        if self._jobs.pop(stream.id, None) is not None:
            self._send_now(self._encoder.encode(Cancel(stream.id)))
        self.last_used = time.monotonic()

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
                self.processed += isinstance(end, Finished)
                self.last_used = time.monotonic()
        # Nobody waits for these (a job that reached a new process after its
        # request had failed, or one cancelled while its tokens were on the
        # way): stop the worker spending time on them.
        for job_id in orphans:
            self._send_now(self._encoder.encode(Cancel(job_id)))

    def _on_pong(self, pong: Pong) -> None:
        if self.pong is not None and pong.instance != self.pong.instance:
            self._worker_lost(f"its process was replaced (pid {self.pong.pid} -> {pong.pid})")
        before = self.state
        if self.pong is None or self.pong.state != pong.state:
            log.info("worker state", model=self.model.name, state=pong.state, pid=pong.pid)
        self.pong = pong
        self.last_pong = time.monotonic()
        if pong.stats.requests_finished > 0:
            self.memory_peak = max(self.memory_peak, footprint(pong.stats))
        if self.state != before:
            self.changed()

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
                self.changed()
            elif event == zmq.EVENT_DISCONNECTED:
                was = self.connected
                lost = self.pong.instance if self.pong is not None else None
                self.connected = False
                self.pong = None
                self.changed()
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
        interval = self.settings.heartbeat_interval
        stalled = False
        while True:
            self._send_ping()
            # After the gateway's own loop stalled, the worker's answers may be
            # waiting unread: give the receive task a round before judging it.
            if self.state == "unresponsive" and not stalled:
                self._on_silence()
            slept = time.monotonic()
            await asyncio.sleep(interval)
            stalled = time.monotonic() - slept > interval + 1.0

    def _on_silence(self) -> None:
        """A hung worker: its requests end now, and its supervisor is asked
        (once per process) to kill it so a fresh one starts."""
        if self._jobs:
            self._fail_all(
                503,
                "worker_unresponsive",
                f"the worker for model {self.model.name!r} has not answered for "
                f"{self.model.heartbeat_limit():.0f}s; it is being restarted",
            )
        pong = self.pong
        if pong is not None and self._hung_reported != pong.instance:
            self._hung_reported = pong.instance
            log.error("worker unresponsive", model=self.model.name, pid=pong.pid)
            self.changed()
            if self.on_hung is not None:
                self.on_hung(self, pong)

    def _send_ping(self) -> None:
        self._send_now(self._encoder.encode(Ping(next(self._seq))))


def _ends(events: Events) -> Iterator[Finished | JobFailed]:
    yield from events.finished
    yield from events.failed
