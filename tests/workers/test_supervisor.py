"""The supervisor runs its model process as the gateway asks (a stand-in
gateway's ROUTER on its control link): nothing before a load; restarts with
backoff, ``failed`` after quick deaths, every exit named (on a fake clock with
fake model processes); unload, kill and stop (with small real processes)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from protocol.config import ModelConfig
from protocol.framing import Encoder, status_decoder
from protocol.messages import KillModel, LoadModel, SupervisorStatus, ToSupervisor, UnloadModel
from workers.memory import LIMIT_ENV
from workers.runtime import ENGINE_DEAD_EXIT
from workers.supervisor import Supervisor, child_env, restart_reason

MODEL = ModelConfig("m", "llm", "/models/m", "tcp://127.0.0.1:1", blas_threads=3)
endpoints = itertools.count()


class StandInGateway:
    """The gateway's end of the control link: a ROUTER the test drives."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"inproc://supervisor-{next(endpoints)}"
        self.sock.bind(self.endpoint)
        self.peer = b""
        self.decode = status_decoder().decode
        self.encode = Encoder().encode

    def status(
        self, until: Callable[[SupervisorStatus], bool], within: float = 10
    ) -> SupervisorStatus:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                self.peer, frame = self.sock.recv_multipart()
                status = self.decode(frame)
                if until(status):
                    return status
        raise TimeoutError("no such status")

    def statuses(self) -> list[SupervisorStatus]:
        """Every status sent and not read yet."""
        out = []
        while self.sock.poll(0):
            self.peer, frame = self.sock.recv_multipart()
            out.append(self.decode(frame))
        return out

    def send(self, command: ToSupervisor) -> None:
        self.sock.send_multipart([self.peer, self.encode(command)])


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    gateway = StandInGateway()
    yield gateway
    gateway.sock.close()


# --- on a fake clock ------------------------------------------------------------


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

    def send_signal(self, signum: int) -> None:
        self.terminated = True

    def terminate(self) -> None:
        self.terminated = True

    def kill(self) -> None:
        self.terminated = True


class Run:
    """A loaded supervisor whose spawns are scripted: (exit code, seconds
    alive) each; it is stopped when the script runs out."""

    def __init__(self, gateway: StandInGateway, script: list[tuple[int, float]]) -> None:
        self.clock = Clock()
        self.processes: list[FakeProcess] = []
        self._script = iter(script)
        self._born: list[int] = []
        self._ends: list[int] = []
        self.supervisor = Supervisor(
            MODEL,
            "/no/such/config.toml",
            gateway.endpoint,
            spawn=self._spawn,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        thread = threading.Thread(target=self.supervisor.serve)
        thread.start()
        self.first = gateway.status(lambda s: True)
        gateway.send(LoadModel())
        thread.join(30)
        assert not thread.is_alive()

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
        """Seconds from each death to the next start."""
        return [
            round((born - died) / 1000, 2)
            for died, born in zip(self._ends, self._born[1:], strict=True)
        ]


def transitions(gateway: StandInGateway) -> list[tuple[str, str]]:
    """The states reported, each once in a row (the status also repeats every second)."""
    seen = [(s.state, s.message) for s in gateway.statuses()]
    return [k for k, _ in itertools.groupby(seen)]


def test_quick_deaths_restart_with_doubling_backoff_then_report_failed(
    gateway: StandInGateway,
) -> None:
    run = Run(gateway, [(ENGINE_DEAD_EXIT, 0.0)] * 7)
    assert run.gaps() == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    states = [state for state, _ in transitions(gateway) if state != "running"]
    assert states == ["unloaded"] + ["restarting"] * 4 + ["failed"] * 3 + ["stopped"]
    assert run.supervisor.restarts == 7


def test_a_failed_model_says_when_it_is_tried_again(gateway: StandInGateway) -> None:
    Run(gateway, [(1, 0.0)] * 5)
    failed = [s for s in gateway.statuses() if s.state == "failed"]
    assert failed and failed[0].retry_in == 8.0  # its fifth quick death: 8 s of backoff


def test_every_exit_is_named_in_the_status(gateway: StandInGateway) -> None:
    run = Run(gateway, [(ENGINE_DEAD_EXIT, 2.0), (-signal.SIGKILL, 0.0), (0, 0.0)])
    assert run.supervisor.restarts_by_reason == {"engine_dead": 1, "killed": 1, "exited": 1}
    messages = [m for state, m in transitions(gateway) if state == "restarting"]
    assert messages == [
        "model process exited with code 70 after 2.0s; retry in 0.5s",
        "model process killed by signal 9 after 0.0s; retry in 1.0s",
        "model process exited with code 0 after 0.0s; retry in 2.0s",
    ]


def test_a_healthy_run_resets_the_backoff(gateway: StandInGateway) -> None:
    run = Run(gateway, [(1, 0.0), (1, 0.0), (1, 61.0), (1, 0.0)])
    assert run.gaps() == [0.5, 1.0, 0.5, 1.0]


def test_the_status_repeats_while_a_process_runs(gateway: StandInGateway) -> None:
    run = Run(gateway, [(1, 10.0)])
    first = run.processes[0].pid
    running = [s for s in gateway.statuses() if s.state == "running" and s.pid == first]
    assert len(running) >= 9  # every second of its 10
    assert running[-1].uptime is not None and running[-1].uptime >= 9.0


def test_nothing_runs_before_the_gateway_says_load(gateway: StandInGateway) -> None:
    run = Run(gateway, [])
    assert run.first.state == "unloaded" and run.first.pid is None and run.first.instance
    assert run.first.host


def test_stop_drains_the_running_model_process(gateway: StandInGateway) -> None:
    run = Run(gateway, [])
    assert run.processes[-1].terminated  # SIGTERM: the model process drains
    assert gateway.statuses()[-1].state == "stopped"


def test_the_model_process_gets_the_models_blas_threads_and_memory_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = child_env(MODEL, memory_limit=5_000)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "3"
    assert env[LIMIT_ENV] == "5000"
    assert LIMIT_ENV not in child_env(MODEL)


def test_why_a_model_process_stopped() -> None:
    assert restart_reason(0) == "exited"  # drained and exited, as a restart asks
    assert restart_reason(1) == "crashed"
    assert restart_reason(ENGINE_DEAD_EXIT) == "engine_dead"
    assert restart_reason(-signal.SIGKILL) == "killed"
    assert restart_reason(-signal.SIGSEGV) == "killed"


# --- with real (stand-in) model processes -----------------------------------------

# A model process that drains (exits 0) on SIGTERM and stops on SIGINT; it
# says when its handlers are in place by creating the file it is given.
SERVES = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
    "pathlib.Path(sys.argv[1]).touch()\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "handlers-installed"


@pytest.fixture
def serving(gateway: StandInGateway, marker: Path) -> Iterator[Supervisor]:
    model = ModelConfig("m", "llm", "/x", "tcp://127.0.0.1:1", drain_timeout=5.0)
    supervisor = Supervisor(
        model,
        "/no/such/config.toml",
        gateway.endpoint,
        shutdown_timeout=2.0,
        spawn=lambda: subprocess.Popen([sys.executable, "-c", SERVES, str(marker)]),
    )
    thread = threading.Thread(target=supervisor.serve)
    thread.start()
    try:
        gateway.status(lambda s: True)
        gateway.send(LoadModel())
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(10)


def started(gateway: StandInGateway, marker: Path) -> int:
    pid = gateway.status(lambda s: s.pid is not None).pid
    assert pid is not None
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the stand-in model process did not start"
        time.sleep(0.01)
    return pid


def test_unload_drains_the_process_and_reports_unloaded_once_it_exited(
    gateway: StandInGateway, serving: Supervisor, marker: Path
) -> None:
    started(gateway, marker)
    gateway.send(UnloadModel())
    gateway.status(lambda s: s.state == "unloading")
    unloaded = gateway.status(lambda s: s.state == "unloaded")
    assert unloaded.pid is None and "exited with code 0" in unloaded.message
    assert serving.process is None and serving.restarts == 0


def test_kill_replaces_a_hung_process_and_counts_a_restart(
    gateway: StandInGateway, serving: Supervisor, marker: Path
) -> None:
    pid = started(gateway, marker)
    gateway.send(KillModel(pid + 1, "not mine"))  # another pid: ignored
    gateway.send(KillModel(pid, "no heartbeat for 2s"))
    died = gateway.status(lambda s: s.state == "restarting")
    assert "killed: no heartbeat for 2s" in died.message and died.restarts == 1
    again = gateway.status(lambda s: s.state == "running" and s.pid not in (None, pid))
    assert again.restarts == 1
