"""The supervisor against a stand-in gateway (a ROUTER on its control endpoint)
and a stand-in model process (a small script): what it starts, stops and
reports for each command, and how a crash loop backs off."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from protocol.config import ModelConfig
from protocol.framing import supervisor_codec, supervisor_command_codec
from protocol.messages import KillModel, LoadModel, SupervisorStatus, ToSupervisor, UnloadModel
from workers import supervisor as supervisor_module
from workers.supervisor import Supervisor

# A model process that drains (exits 0) on SIGTERM and stops on SIGINT; it
# says when its handlers are in place by creating the file it is given.
SERVES = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
    "pathlib.Path(sys.argv[1]).touch()\n"
    "time.sleep(60)\n"
)
CRASHES = "import sys; sys.exit(1)"


class StandInGateway:
    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.peer = b""
        self.decode = supervisor_codec().decode
        self.encode = supervisor_command_codec().encode

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

    def send(self, command: ToSupervisor) -> None:
        self.sock.send_multipart([self.peer, self.encode(command)])


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    gateway = StandInGateway()
    yield gateway
    gateway.sock.close()


def supervised(gateway: StandInGateway, script: str, marker: Path) -> Iterator[Supervisor]:
    model = ModelConfig("m", "llm", "/x", "tcp://127.0.0.1:1", drain_timeout=5.0)
    supervisor = Supervisor(
        model,
        "/no/such/config.toml",
        gateway.endpoint,
        shutdown_timeout=2.0,
        spawn=lambda: subprocess.Popen([sys.executable, "-c", script, str(marker)]),
    )
    thread = threading.Thread(target=supervisor.serve)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(10)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "handlers-installed"


@pytest.fixture
def serving(gateway: StandInGateway, marker: Path) -> Iterator[Supervisor]:
    yield from supervised(gateway, SERVES, marker)


@pytest.fixture
def crashing(
    gateway: StandInGateway, monkeypatch: pytest.MonkeyPatch, marker: Path
) -> Iterator[Supervisor]:
    monkeypatch.setattr(supervisor_module, "BACKOFF_START_S", 0.05)
    yield from supervised(gateway, CRASHES, marker)


def wait_for(marker: Path) -> None:
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the stand-in model process did not start"
        time.sleep(0.01)


def test_nothing_runs_until_the_gateway_says_load(
    gateway: StandInGateway, serving: Supervisor
) -> None:
    first = gateway.status(lambda s: True)
    assert first.state == "unloaded" and first.pid is None and first.instance
    gateway.send(LoadModel(memory_limit=123))
    running = gateway.status(lambda s: s.state == "running" and s.pid is not None)
    assert running.host and running.restarts == 0


def test_unload_drains_the_process_and_reports_unloaded_once_it_exited(
    gateway: StandInGateway, serving: Supervisor, marker: Path
) -> None:
    gateway.status(lambda s: True)
    gateway.send(LoadModel())
    pid = gateway.status(lambda s: s.pid is not None).pid
    wait_for(marker)
    gateway.send(UnloadModel())
    gateway.status(lambda s: s.state == "unloading")
    unloaded = gateway.status(lambda s: s.state == "unloaded")
    assert unloaded.pid is None and "exited with code 0" in unloaded.message
    assert serving.process is None and pid is not None


def test_kill_replaces_a_hung_process_and_counts_a_restart(
    gateway: StandInGateway, serving: Supervisor
) -> None:
    gateway.status(lambda s: True)
    gateway.send(LoadModel())
    pid = gateway.status(lambda s: s.pid is not None).pid
    assert pid is not None
    gateway.send(KillModel(pid + 1, "not mine"))  # another pid: ignored
    gateway.send(KillModel(pid, "no heartbeat for 2s"))
    died = gateway.status(lambda s: s.state == "restarting")
    assert "killed: no heartbeat for 2s" in died.message and died.restarts == 1
    again = gateway.status(lambda s: s.state == "running" and s.pid not in (None, pid))
    assert again.restarts == 1


def test_a_crash_loop_backs_off_and_ends_failed_with_the_next_try_time(
    gateway: StandInGateway, crashing: Supervisor
) -> None:
    gateway.status(lambda s: True)
    gateway.send(LoadModel())
    failed = gateway.status(lambda s: s.state == "failed", within=20)
    assert failed.restarts == supervisor_module.FAILED_AFTER
    assert "exited with code 1" in failed.message
    assert failed.retry_in is not None and failed.retry_in > 0
    gateway.send(UnloadModel())
    assert gateway.status(lambda s: s.state == "unloaded").pid is None
