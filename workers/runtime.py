"""The worker runtime: one model process's socket loop around its engine.

Single-threaded and synchronous on purpose: the loop alternates between
reading the ROUTER socket (jobs, cancels, pings) and one engine step, so the
heartbeat answer is proof that the generation loop itself is alive. The only
other thread loads the model at startup, so pings are answered (state
``loading``) while weights are read.

SIGTERM drains: the state becomes ``draining`` (new jobs get a 503), running
jobs finish (up to the model's ``drain_timeout``), then the process exits and
its supervisor starts a fresh one. SIGINT stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable

import structlog
import zmq

from protocol.config import ModelConfig
from protocol.framing import Encoder, FrameError, to_worker_decoder
from protocol.messages import (
    Cancel,
    Events,
    Goodbye,
    Job,
    JobFailed,
    Ping,
    Pong,
    Restart,
    WorkerState,
    WorkerStats,
)
from workers.engine import Engine, JobError

log = structlog.get_logger()

IDLE_POLL_MS = 100
LAST_FRAMES_LINGER_MS = 5000


class WorkerRuntime:
    def __init__(
        self,
        model: ModelConfig,
        engine_factory: Callable[[], Engine],
        *,
        step_budget_s: float = 0.02,
    ) -> None:
        self.model = model
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._step_budget_s = step_budget_s
        self.state: WorkerState = "loading"
        self.error: str | None = None
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._steps = 0
        self._owners: dict[str, bytes] = {}  # job id -> gateway socket identity
        self._peers: set[bytes] = set()  # every gateway connection seen
        self._decoder = to_worker_decoder()
        self._encoder = Encoder()
        self._stop = threading.Event()
        self._drain_deadline: float | None = None

    # --- startup ------------------------------------------------------------

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            engine = self._engine_factory()
            engine.load()
        except BaseException as exc:  # noqa: BLE001 - any failure is reported, not raised
            self.error = f"model {self.model.name!r} failed to load: {type(exc).__name__}: {exc}"
            self.state = "failed"
            log.error("load failed", model=self.model.name, error=self.error)
            return
        self._engine = engine
        self.state = "ready"
        log.info("ready", model=self.model.name, seconds=round(time.perf_counter() - started, 2))

    def stop(self, *_: object) -> None:
        if self.state == "ready":
            self.state = "draining"  # jobs still arriving are refused, not started
        self._stop.set()

    def drain(self, *_: object, timeout: float | None = None) -> None:
        """Finish running jobs (up to ``timeout``, default the model's
        ``drain_timeout``), refuse new ones, then exit (SIGTERM, or Restart)."""
        timeout = self.model.drain_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._drain_deadline is None or deadline < self._drain_deadline:
            self._drain_deadline = deadline
            if self.state == "ready":
                self.state = "draining"
            log.info("draining", model=self.model.name, timeout=timeout)

    def _drained(self) -> bool:
        if self._drain_deadline is None:
            return False
        idle = self._engine is None or not self._engine.has_work()
        return idle or time.monotonic() >= self._drain_deadline

    # --- main loop ----------------------------------------------------------

    def run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.model.endpoint)
        log.info("listening", model=self.model.name, endpoint=self.model.endpoint)
        signal.signal(signal.SIGTERM, self.drain)
        signal.signal(signal.SIGINT, self.stop)
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        try:
            while not self._stop.is_set() and not self._drained():
                busy = self._engine is not None and self._engine.has_work()
                if sock.poll(0 if busy else IDLE_POLL_MS, zmq.POLLIN):
                    self._receive_all(sock)
                if self._engine is not None and self._engine.has_work():
                    self._step(sock)
                self._steps += 1
            # Jobs that were on their way when the drain began get a clear 503
            # rather than a dropped connection; so do jobs still running at the
            # drain deadline (or at SIGINT). Then a Goodbye, after all of it.
            self._receive_all(sock)
            self._fail_running(sock, f"model {self.model.name!r} was stopped or restarted")
            for peer in self._peers:
                self._send(sock, peer, Goodbye(self.instance))
        finally:
            # Without term() the process can exit before ZeroMQ's I/O thread has
            # sent the last frames (a drained job's Finished, the Goodbye);
            # term() waits for them, up to the linger: seconds, since a last
            # frame may hold an image or audio for a gateway busy elsewhere.
            # (Frames for a gateway that is gone are dropped at once.)
            sock.close(linger=LAST_FRAMES_LINGER_MS)
            ctx.term()
        log.info("stopped", model=self.model.name)

    def _receive_all(self, sock: zmq.Socket) -> None:
        while True:
            try:
                identity, frame = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            except ValueError:  # not two frames
                log.error("dropped frame with bad envelope")
                continue
            try:
                message = self._decoder.decode(frame)
            except FrameError as exc:
                log.error("dropped bad frame", error=str(exc))
                continue
            self._peers.add(identity)
            match message:
                case Ping(seq=seq):
                    self._send(sock, identity, self._pong(seq))
                case Restart(graceful=graceful, instance=instance):
                    if instance is not None and instance != self.instance:
                        log.info("ignored a restart meant for another process", instance=instance)
                        continue
                    log.info("restart requested", model=self.model.name, graceful=graceful)
                    self.drain(timeout=None if graceful else 0.0)
                case Cancel(id=job_id):
                    if self._engine is not None and self._engine.cancel(job_id):
                        self._owners.pop(job_id, None)
                        log.info("cancelled", job=job_id)
                case _:  # a job of any family; the engine refuses what it cannot do
                    self._submit(sock, identity, message)

    def _submit(self, sock: zmq.Socket, identity: bytes, job: Job) -> None:
        engine = self._engine
        if engine is None or self.state == "draining":
            message = self.error or f"model {self.model.name!r} is {self.state}"
            self._fail(sock, identity, JobFailed(job.id, 503, "model_not_ready", message))
            return
        try:
            engine.submit(job)
        except JobError as exc:
            self._fail(sock, identity, JobFailed(job.id, exc.status, exc.code, str(exc), exc.param))
            return
        except Exception as exc:  # noqa: BLE001 - a bad job must not kill the worker
            log.exception("submit failed", job=job.id)
            self._fail(sock, identity, JobFailed(job.id, 500, "internal_error", repr(exc)))
            return
        self._owners[job.id] = identity

    def _budget(self) -> float:
        """How long one engine step may run before its events are sent.

        Every message costs the gateway a chunk per stream, so with many
        streams a step runs longer (up to 4x at 32 streams) and each chunk
        carries more tokens; a lone stream still gets a chunk every 20 ms.
        """
        assert self._engine is not None
        active = self._engine.stats().active
        return self._step_budget_s * min(4.0, max(1.0, active / 8))

    def _step(self, sock: zmq.Socket) -> None:
        assert self._engine is not None
        try:
            events = self._engine.step(self._budget())
        except Exception as exc:  # noqa: BLE001 - fail the jobs, keep serving
            log.exception("engine step failed; failing all running jobs")
            failed = [
                JobFailed(job_id, 500, "engine_error", f"the engine failed: {exc!r}")
                for job_id in self._owners
            ]
            self._engine.reset()
            events = Events(failed=failed)
        by_owner: dict[bytes, Events] = {}
        for delta in events.deltas:
            self._events_for(by_owner, delta.id).deltas.append(delta)
        for output in events.outputs:
            self._events_for(by_owner, output.id).outputs.append(output)
        for done in events.finished:
            self._events_for(by_owner, done.id).finished.append(done)
            self._owners.pop(done.id, None)
        for failed_job in events.failed:
            self._events_for(by_owner, failed_job.id).failed.append(failed_job)
            self._owners.pop(failed_job.id, None)
        for identity, batch in by_owner.items():
            self._send(sock, identity, batch)

    def _fail_running(self, sock: zmq.Socket, message: str) -> None:
        by_owner: dict[bytes, Events] = {}
        for job_id in self._owners:
            failure = JobFailed(job_id, 503, "worker_stopped", message)
            self._events_for(by_owner, job_id).failed.append(failure)
        self._owners.clear()
        for identity, batch in by_owner.items():
            self._send(sock, identity, batch)

    def _events_for(self, by_owner: dict[bytes, Events], job_id: str) -> Events:
        identity = self._owners.get(job_id, b"")
        if identity not in by_owner:
            by_owner[identity] = Events(deltas=[], finished=[], failed=[], outputs=[])
        return by_owner[identity]

    # --- replies ------------------------------------------------------------

    def _pong(self, seq: int) -> Pong:
        stats = self._engine.stats() if self._engine is not None else WorkerStats()
        return Pong(
            seq=seq,
            instance=self.instance,
            pid=os.getpid(),
            model=self.model.name,
            family=self.model.family,
            state=self.state,
            steps=self._steps,
            stats=stats,
            error=self.error,
        )

    def _fail(self, sock: zmq.Socket, identity: bytes, failure: JobFailed) -> None:
        self._send(sock, identity, Events(failed=[failure]))

    def _send(self, sock: zmq.Socket, identity: bytes, message: Events | Pong | Goodbye) -> None:
        if identity:
            sock.send_multipart([identity, self._encoder.encode(message)], copy=False)
