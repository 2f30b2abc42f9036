"""The worker runtime: one model process's socket loop around its engine.

Synchronous on purpose: the loop alternates between reading the ROUTER
socket (jobs, cancels, pings) and one engine step, so the heartbeat answer is
proof that the generation loop itself is alive. The process's threads:

- the loop (the main thread), the only one that touches the socket;
- ``model-loader``, which builds and loads the engine at startup, so pings
  are answered (state ``loading``) while weights are read;
- a Whisper engine's own two: ``transcriber`` (it loads the model and runs
  one transcription at a time, so a long one never blocks the loop) and
  ``ffmpeg`` (decodes uploads).

A job's own problem (:class:`~workers.engine.JobError`) fails that job. An
engine that fails is dead, as vLLM's ``EngineDeadError`` says: an exception
escaping its ``step`` (or ``cancel``, or an ``EngineDeadError`` from
``submit``) fails every job it held with a 503 ``engine_dead`` naming the
model and the cause, the state becomes ``failed`` with that error, a Goodbye
follows, and :meth:`WorkerRuntime.run` returns :data:`ENGINE_DEAD_EXIT` for
the process to exit with, so that its supervisor restarts it (with backoff):
MLX state that broke once is not trusted with the next request.

SIGTERM (:meth:`WorkerRuntime.drain`) drains: the state becomes ``draining``
(new jobs get a 503), running jobs finish (up to the model's
``drain_timeout``), then the process exits and its supervisor starts a fresh
one. SIGINT (:meth:`WorkerRuntime.stop`) stops at once.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

import msgspec
import structlog
import zmq

from protocol.config import ModelConfig
from protocol.framing import Encoder, FrameError, to_worker_decoder
from protocol.logs import JOB_IDS, job_context
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
from workers.engine import Engine, EngineDeadError, JobError, unprocessable
from workers.memory import mlx_bytes, rss_bytes

log = structlog.get_logger()

IDLE_POLL_MS = 100
LAST_FRAMES_LINGER_MS = 5000
# The exit status of a process whose engine died (BSD's EX_SOFTWARE).
ENGINE_DEAD_EXIT = 70


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
        self._exit_code = 0

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

    def run(self) -> int:
        """Serve until stopped or drained; the process's exit status."""
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.model.endpoint)
        log.info("listening", model=self.model.name, endpoint=self.model.endpoint)
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        try:
            while not self._stop.is_set() and not self._drained():
                try:
                    self._serve_once(sock)
                except Exception as exc:  # noqa: BLE001 - the engine is dead, not the jobs' fault
                    self._die(sock, exc)
            # Jobs that were on their way when the drain began get a clear 503
            # rather than a dropped connection; so do jobs still running at the
            # drain deadline (or at SIGINT). Then a Goodbye, after all of it.
            self._receive_all(sock)
            message = f"model {self.model.name!r} was stopped or restarted"
            self._fail_all(sock, 503, "worker_stopped", message)
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
        log.info("stopped", model=self.model.name, exit_code=self._exit_code)
        return self._exit_code

    def _serve_once(self, sock: zmq.Socket) -> None:
        busy = self._engine is not None and self._engine.has_work()
        if sock.poll(0 if busy else IDLE_POLL_MS, zmq.POLLIN):
            self._receive_all(sock)
        if self._engine is not None and self._engine.has_work():
            events = self._engine.step(self._budget())
            self._send_events(sock, events)
        self._steps += 1

    def _die(self, sock: zmq.Socket, exc: Exception) -> None:
        """The engine failed: fail all its jobs, report ``failed``, and stop."""
        cause = str(exc) if isinstance(exc, EngineDeadError) else f"{type(exc).__name__}: {exc}"
        name = self.model.name
        self.error = f"the engine of model {name!r} failed ({cause}); its worker restarts"
        log.error("engine dead", model=self.model.name, error=self.error, exc_info=exc)
        self.state = "failed"
        self._engine = None
        self._exit_code = ENGINE_DEAD_EXIT
        self._fail_all(sock, 503, "engine_dead", self.error)
        self._stop.set()

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
                        JOB_IDS.discard(job_id)
                case _:  # a job of any family; the engine refuses what it cannot do
                    with structlog.contextvars.bound_contextvars(**job_context(message)):
                        self._submit(sock, identity, message)

    def _submit(self, sock: zmq.Socket, identity: bytes, job: Job) -> None:
        engine = self._engine
        if engine is None or self.state != "ready":
            message = self.error or f"model {self.model.name!r} is {self.state}"
            self._fail(sock, identity, JobFailed(job.id, 503, "model_not_ready", message))
            return
        self._owners[job.id] = identity  # first: an engine that dies now fails it too
        try:
            answered = engine.submit(job)
        except JobError as exc:
            del self._owners[job.id]
            self._fail(sock, identity, JobFailed(job.id, exc.status, exc.code, str(exc), exc.param))
            return
        except EngineDeadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad job must not kill the worker
            # An engine checks and prepares a job before it changes its own
            # state, and raises EngineDeadError if that state broke (the Engine
            # contract): anything else is a job it could not process, and the
            # engine is as it was. So this job fails alone, with a 400 saying
            # why (see unprocessable), and the worker serves on.
            log.exception("submit failed", job=job.id)
            del self._owners[job.id]
            self._fail(sock, identity, unprocessable(job.id, self.model.name, exc))
            return
        JOB_IDS.add(job.id, job.request_id, job.house_id)
        if answered is not None:  # answered at once: a token count, a voice list
            self._send_events(sock, answered)

    def _budget(self) -> float:
        """How long one engine step may run before its events are sent.

        Every message costs the gateway a chunk per stream, so with many
        streams a step runs longer (up to 4x at 32 streams) and each chunk
        carries more tokens; a lone stream still gets a chunk every 20 ms.
        """
        assert self._engine is not None
        active = self._engine.stats().active
        return self._step_budget_s * min(4.0, max(1.0, active / 8))

    def _send_events(self, sock: zmq.Socket, events: Events) -> None:
        """Each gateway its jobs' part of ``events``; ended jobs are forgotten."""
        by_owner: dict[bytes, Events] = {}
        for delta in events.deltas:
            self._events_for(by_owner, delta.id).deltas.append(delta)
        for output in events.outputs:
            self._events_for(by_owner, output.id).outputs.append(output)
        for done in events.finished:
            self._events_for(by_owner, done.id).finished.append(done)
            self._owners.pop(done.id, None)
            JOB_IDS.discard(done.id)
        for failed_job in events.failed:
            self._events_for(by_owner, failed_job.id).failed.append(failed_job)
            self._owners.pop(failed_job.id, None)
            JOB_IDS.discard(failed_job.id)
        for identity, batch in by_owner.items():
            self._send(sock, identity, batch)

    def _fail_all(self, sock: zmq.Socket, status: int, code: str, message: str) -> None:
        failed = [JobFailed(job_id, status, code, message) for job_id in self._owners]
        self._send_events(sock, Events(failed=failed))

    def _events_for(self, by_owner: dict[bytes, Events], job_id: str) -> Events:
        identity = self._owners.get(job_id, b"")
        if identity not in by_owner:
            by_owner[identity] = Events(deltas=[], finished=[], failed=[], outputs=[])
        return by_owner[identity]

    # --- replies ------------------------------------------------------------

    def _pong(self, seq: int) -> Pong:
        stats = self._engine.stats() if self._engine is not None else WorkerStats()
        active, peak = mlx_bytes()
        stats = msgspec.structs.replace(
            stats, rss_bytes=rss_bytes(), mlx_active_bytes=active, mlx_peak_bytes=peak
        )
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
