"""The supervisor keeps one model process alive: restarts with backoff,
``failed`` after quick deaths, every exit named; on a fake clock with fake
model processes, its status read from a real control socket."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator

import pytest
import zmq

from protocol.config import ModelConfig
from protocol.framing import status_decoder
from protocol.messages import SupervisorStatus
from workers.runtime import ENGINE_DEAD_EXIT
from workers.supervisor import Supervisor, child_env, restart_reason

MODEL = ModelConfig("m", "llm", "/models/m", "tcp://127.0.0.1:1", blas_threads=3)


class Clock:
    """Time that passes only when the supervisor sleeps (kept in whole
    milliseconds, so that no rounding decides when a process dies)."""

    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> float:
        return self.ms / 1000

    def sleep(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


class FakeProcess:
    """A model process that exits with ``code`` after ``lives`` seconds."""

    pids = itertools.count(100)

    def __init__(self, clock: Clock, code: int, lives: float) -> None:
        self.pid = next(self.pids)
        self._clock = clock
        self._code = code
        self._dies_at_ms = clock.ms + lives * 1000
        self.terminated = False

    def poll(self) -> int | None:
        return self._code if self.terminated or self._clock.ms >= self._dies_at_ms else None

    def wait(self, timeout: float | None = None) -> int:
        code = self.poll()
        assert code is not None, "waited for a process that runs"
        return code

    @property
    def died_ms(self) -> int:
        return int(self._dies_at_ms)

    def terminate(self) -> None:
        self.terminated = True

    def kill(self) -> None:
        self.terminated = True


class Run:
    """A supervisor whose spawns are scripted: (exit code, seconds alive) each,
    and which is stopped when the script runs out."""

    def __init__(self, control: str, script: list[tuple[int, float]]) -> None:
        self.clock = Clock()
        self.processes: list[FakeProcess] = []
        self._script = iter(script)
        self._born: list[int] = []
        self._ends: list[int] = []
        self.supervisor = Supervisor(
            MODEL, "c.toml", control, spawn=self._spawn, clock=self.clock, sleep=self.clock.sleep
        )

    def _spawn(self) -> FakeProcess:
        if self.processes:
            self._ends.append(self.processes[-1].died_ms)
        self._born.append(self.clock.ms)
        code, lives = next(self._script, (0, float("inf")))
        if lives == float("inf"):
            self.supervisor.stop()  # the script is done: a last process, then SIGTERM
        process = FakeProcess(self.clock, code, lives)
        self.processes.append(process)
        return process

    def gaps(self) -> list[float]:
        """Seconds from each death to the next start, to the tick."""
        return [
            round((born - died) / 1000, 1)
            for died, born in zip(self._ends, self._born[1:], strict=True)
        ]


@pytest.fixture
def control() -> Iterator[tuple[str, zmq.Socket]]:
    """The gateway's end of the control socket."""
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    endpoint = "inproc://supervisor-status"
    pull.bind(endpoint)
    yield endpoint, pull
    pull.close(linger=0)


def statuses(pull: zmq.Socket) -> list[SupervisorStatus]:
    decoder = status_decoder()
    out = []
    while pull.poll(0):
        out.append(decoder.decode(pull.recv()))
    return out


def transitions(pull: zmq.Socket) -> list[tuple[str, str]]:
    """The states reported, each once in a row (the status also repeats every 2 s)."""
    seen = [(s.state, s.message) for s in statuses(pull)]
    return [k for k, _ in itertools.groupby(seen)]


def test_quick_deaths_restart_with_doubling_backoff_then_report_failed(
    control: tuple[str, zmq.Socket],
) -> None:
    endpoint, pull = control
    run = Run(endpoint, [(ENGINE_DEAD_EXIT, 0.0)] * 7)
    assert run.supervisor.run() == 0
    assert run.gaps() == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    states = [state for state, _ in transitions(pull) if state != "running"]
    assert states == ["restarting"] * 4 + ["failed"] * 3 + ["stopped"]
    assert run.supervisor.restarts == 7


def test_every_exit_is_named_in_the_status(control: tuple[str, zmq.Socket]) -> None:
    endpoint, pull = control
    run = Run(endpoint, [(ENGINE_DEAD_EXIT, 2.0), (-signal.SIGKILL, 0.0), (0, 0.0)])
    run.supervisor.run()
    messages = [m for state, m in transitions(pull) if state == "restarting"]
    assert messages == [
        "model process exited with code 70 after 2.0s; retry in 0.5s",
        "model process killed by signal 9 after 0.0s; retry in 1.0s",
        "model process exited with code 0 after 0.0s; retry in 2.0s",
    ]


def test_a_healthy_run_resets_the_backoff(control: tuple[str, zmq.Socket]) -> None:
    endpoint, pull = control
    run = Run(endpoint, [(1, 0.0), (1, 0.0), (1, 61.0), (1, 0.0)])
    run.supervisor.run()
    assert run.gaps() == [0.5, 1.0, 0.5, 1.0]


def test_the_status_repeats_while_a_process_runs(control: tuple[str, zmq.Socket]) -> None:
    endpoint, pull = control
    run = Run(endpoint, [(1, 10.0)])
    run.supervisor.run()
    running = [s for s in statuses(pull) if s.state == "running"]
    assert len(running) >= 5  # every 2 s of its 10
    assert running[0].pid == run.processes[0].pid


def test_stop_drains_the_running_model_process(control: tuple[str, zmq.Socket]) -> None:
    endpoint, pull = control
    run = Run(endpoint, [])
    assert run.supervisor.run() == 0
    assert run.processes[-1].terminated  # SIGTERM: the model process drains
    assert statuses(pull)[-1].state == "stopped"


def test_the_model_process_gets_the_models_blas_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = child_env(MODEL)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "3"


def test_why_a_model_process_stopped() -> None:
    assert restart_reason(0) == "exited"  # drained and exited, as a restart asks
    assert restart_reason(1) == "crashed"
    assert restart_reason(ENGINE_DEAD_EXIT) == "engine_dead"
    assert restart_reason(-signal.SIGKILL) == "killed"
    assert restart_reason(-signal.SIGSEGV) == "killed"
