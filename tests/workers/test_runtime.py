"""The worker runtime's loop, driven over a real ZeroMQ socket as the gateway
drives it: heartbeats, jobs and their events, refusals, cancels, and an
engine that dies. The engine is a stub: what is under test is the runtime."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import zmq

from protocol.config import ModelConfig
from protocol.framing import Encoder, from_worker_decoder
from protocol.messages import (
    Cancel,
    ChatJob,
    ChatMessage,
    Delta,
    Events,
    Finished,
    FromWorker,
    Goodbye,
    Job,
    JobFailed,
    Ping,
    Pong,
    SamplingParams,
    ToWorker,
    Usage,
    WorkerStats,
)
from workers.engine import EngineDeadError, JobError
from workers.runtime import ENGINE_DEAD_EXIT, WorkerRuntime

WAIT_MS = 5000


class StubEngine:
    """Each job gains one token ("x") per step until ``max_tokens``. What a job
    says in its one message's content decides what else happens."""

    family = "llm"

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[int, int]] = {}  # id -> (tokens made, max_tokens)
        self.explode_at_step = False

    def load(self) -> None:
        pass

    def submit(self, job: Job) -> Events | None:
        assert isinstance(job, ChatJob)
        match job.messages[0].content:
            case "count":
                return Events(finished=[Finished(job.id, "stop", Usage(7, 0))])
            case "refuse":
                raise JobError("'max_tokens' is too large", param="max_tokens")
            case "unforeseen":
                raise KeyError("no such thing")
            case "break the batch":
                raise EngineDeadError("scheduling a job failed: RuntimeError: out of memory")
            case "explode":
                self.explode_at_step = True
        self.jobs[job.id] = (0, job.params.max_tokens or 1_000_000)
        return None

    def cancel(self, job_id: str) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def has_work(self) -> bool:
        return bool(self.jobs)

    def step(self, budget_s: float) -> Events:
        if self.explode_at_step:
            raise RuntimeError("MLX state is corrupt")
        events = Events(deltas=[], finished=[])
        for job_id, (made, most) in list(self.jobs.items()):
            made += 1
            events.deltas.append(Delta(job_id, "x", 1))
            self.jobs[job_id] = (made, most)
            if made == most:
                del self.jobs[job_id]
                events.finished.append(Finished(job_id, "length", Usage(1, made)))
        return events

    def stats(self) -> WorkerStats:
        return WorkerStats(active=len(self.jobs))


class Gateway:
    """The gateway's end: a DEALER connected to the worker's ROUTER."""

    def __init__(self, endpoint: str) -> None:
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._encoder = Encoder()
        self._decoder = from_worker_decoder()

    def send(self, message: ToWorker) -> None:
        self.sock.send(self._encoder.encode(message))

    def receive(self) -> FromWorker:
        assert self.sock.poll(WAIT_MS), "the worker said nothing"
        return self._decoder.decode(self.sock.recv())

    def until(self, done: Callable[[FromWorker], bool]) -> list[FromWorker]:
        """Every message up to and including the first that is ``done``."""
        seen = [self.receive()]
        while not done(seen[-1]):
            seen.append(self.receive())
        return seen

    def ready(self) -> Pong:
        for seq in range(100):
            self.send(Ping(seq))
            pong = self.until(lambda m: isinstance(m, Pong))[-1]
            assert isinstance(pong, Pong)
            if pong.state == "ready":
                return pong
        raise AssertionError("the worker never became ready")

    def close(self) -> None:
        self.sock.close()
        self._ctx.term()


class Worker:
    def __init__(self, runtime: WorkerRuntime, engine: StubEngine, exit: Future[int]) -> None:
        self.runtime, self.engine, self.exit = runtime, engine, exit


@pytest.fixture
def folder() -> Iterator[Path]:
    # Short: an ipc:// path must fit in a socket address (about 100 bytes).
    with tempfile.TemporaryDirectory(prefix="rt") as name:
        yield Path(name)


@pytest.fixture
def worker(folder: Path) -> Iterator[Worker]:
    model = ModelConfig("stub", "llm", "/none", f"ipc://{folder}/w", drain_timeout=5.0)
    engine = StubEngine()
    runtime = WorkerRuntime(model, lambda: engine, step_budget_s=0.001)
    with ThreadPoolExecutor(1) as pool:
        running = Worker(runtime, engine, pool.submit(runtime.run))
        yield running
        runtime.stop()
        running.exit.result(timeout=10)


@pytest.fixture
def gateway(worker: Worker) -> Iterator[Gateway]:
    client = Gateway(worker.runtime.model.endpoint)
    client.ready()
    yield client
    client.close()


def chat(job_id: str, content: str, max_tokens: int | None = None) -> ChatJob:
    return ChatJob(job_id, [ChatMessage("user", content)], SamplingParams(max_tokens=max_tokens))


def ends(messages: list[FromWorker]) -> dict[str, Finished | JobFailed]:
    found: dict[str, Finished | JobFailed] = {}
    for m in messages:
        if isinstance(m, Events):
            found |= {e.id: e for e in [*m.finished, *m.failed]}
    return found


def test_a_ping_is_answered_by_the_loop_with_its_state_and_step_count(gateway: Gateway) -> None:
    first = gateway.ready()
    gateway.send(Ping(1000))
    second = gateway.until(lambda m: isinstance(m, Pong))[-1]
    assert isinstance(second, Pong)
    assert (first.model, first.family, first.state) == ("stub", "llm", "ready")
    assert second.seq == 1000 and second.instance == first.instance
    assert second.steps > first.steps  # the loop has gone round since


def test_a_job_streams_its_deltas_then_finishes(gateway: Gateway) -> None:
    gateway.send(chat("j", "hi", max_tokens=3))
    seen = gateway.until(lambda m: isinstance(m, Events) and bool(m.finished))
    deltas = [d for m in seen if isinstance(m, Events) for d in m.deltas]
    assert "".join(d.text for d in deltas) == "xxx"
    assert ends(seen)["j"] == Finished("j", "length", Usage(1, 3))


def test_an_answer_from_submit_is_sent_at_once(worker: Worker, gateway: Gateway) -> None:
    gateway.send(chat("c", "count"))
    (events,) = gateway.until(lambda m: isinstance(m, Events))
    assert events == Events(finished=[Finished("c", "stop", Usage(7, 0))])
    assert not worker.engine.jobs


def test_a_refused_job_fails_alone_with_its_status(gateway: Gateway) -> None:
    gateway.send(chat("r", "refuse"))
    failed = ends(gateway.until(lambda m: isinstance(m, Events)))["r"]
    assert failed == JobFailed(
        "r", 400, "invalid_request_error", "'max_tokens' is too large", "max_tokens"
    )


def test_an_unforeseen_error_in_submit_is_a_400_and_the_worker_serves_on(
    gateway: Gateway,
) -> None:
    gateway.send(chat("u", "unforeseen"))
    failed = ends(gateway.until(lambda m: isinstance(m, Events)))["u"]
    assert isinstance(failed, JobFailed)
    assert (failed.status, failed.code) == (400, "unprocessable_request")
    assert "'stub'" in failed.message and "KeyError" in failed.message
    gateway.send(chat("next", "hi", max_tokens=1))
    assert isinstance(
        ends(gateway.until(lambda m: isinstance(m, Events) and bool(m.finished)))["next"], Finished
    )


def test_cancel_drops_the_job_in_the_engine(worker: Worker, gateway: Gateway) -> None:
    gateway.send(chat("long", "hi"))
    gateway.until(lambda m: isinstance(m, Events) and bool(m.deltas))
    gateway.send(Cancel("long"))
    gateway.send(Ping(7))
    gateway.until(lambda m: isinstance(m, Pong) and m.seq == 7)
    assert "long" not in worker.engine.jobs


def kill_the_engine(gateway: Gateway, how: str) -> dict[str, JobFailed]:
    """A job runs, then one whose content is ``how`` breaks the engine: the
    failures sent before the Goodbye."""
    gateway.send(chat("running", "hi"))
    gateway.until(lambda m: isinstance(m, Events) and bool(m.deltas))
    gateway.send(chat("last straw", how))
    failed = ends(gateway.until(lambda m: isinstance(m, Goodbye)))
    assert all(isinstance(f, JobFailed) for f in failed.values())
    return failed  # type: ignore[return-value]


def test_a_step_that_raises_fails_every_job_with_engine_dead_and_the_process_exits(
    worker: Worker, gateway: Gateway
) -> None:
    failed = kill_the_engine(gateway, "explode")
    assert set(failed) == {"running", "last straw"}
    for failure in failed.values():
        assert (failure.status, failure.code) == (503, "engine_dead")
        assert (
            "'stub'" in failure.message and "RuntimeError: MLX state is corrupt" in failure.message
        )
    assert worker.exit.result(timeout=10) == ENGINE_DEAD_EXIT
    # What the Pongs would have said, had any ping come in time.
    assert worker.runtime.state == "failed"
    assert worker.runtime.error == failed["running"].message


def test_an_engine_that_breaks_while_taking_a_job_is_dead_too(
    worker: Worker, gateway: Gateway
) -> None:
    failed = kill_the_engine(gateway, "break the batch")
    assert set(failed) == {"running", "last straw"}
    assert all(f.code == "engine_dead" and "out of memory" in f.message for f in failed.values())
    assert worker.exit.result(timeout=10) == ENGINE_DEAD_EXIT


def test_a_stopped_worker_fails_its_running_jobs_says_goodbye_and_exits_zero(
    worker: Worker, gateway: Gateway
) -> None:
    gateway.send(chat("long", "hi"))
    gateway.until(lambda m: isinstance(m, Events) and bool(m.deltas))
    worker.runtime.stop()
    failed = ends(gateway.until(lambda m: isinstance(m, Goodbye)))["long"]
    assert isinstance(failed, JobFailed) and failed.code == "worker_stopped"
    assert worker.exit.result(timeout=10) == 0
