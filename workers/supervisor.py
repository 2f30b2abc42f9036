"""A worker's Procfile entry: keep one model process alive.

``python -m workers.supervisor --model NAME`` starts ``workers.serve`` for
that model and restarts it with exponential backoff whenever it exits. It
never exits because its model process died: honcho stops *every* entry when
one exits, so supervision has to live here, not in honcho. It pushes its
state (starting, running, restarting, failed) to the gateway's control socket
and logs every transition. Any exit is a death to restart: a crash, a kill,
a drained process (exit 0: a restart was asked for) or an engine that died
(``workers.runtime.ENGINE_DEAD_EXIT``). SIGTERM/SIGINT stop the model process
(which drains its running requests first), then the supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Protocol

import setproctitle
import structlog
import zmq

from protocol.config import ModelConfig, model_from_command_line
from protocol.framing import Encoder
from protocol.logs import configure_logging
from protocol.messages import SupervisorState, SupervisorStatus
from workers.blas import openblas_path
from workers.runtime import ENGINE_DEAD_EXIT

log = structlog.get_logger()

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that ran this long before dying resets the backoff.
HEALTHY_RUN_S = 60.0
# This many quick deaths in a row: report "failed" (and keep retrying slowly).
FAILED_AFTER = 5
STATUS_EVERY_S = 2.0
# How often the model process is looked at (and a stop noticed).
TICK_S = 0.05
STOPPED_LINGER_MS = 200


def child_env(model: ModelConfig) -> dict[str, str]:
    """The model process's environment: OpenBLAS preloaded, BLAS threads capped.

    Several model processes share few cores; without a cap each OpenBLAS pool
    spawns a thread per core and they fight.
    """
    env = dict(os.environ)
    path = openblas_path()
    if path and sys.platform.startswith("linux"):
        env["LD_PRELOAD"] = ":".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
    threads = str(model.blas_threads)
    env.setdefault("OPENBLAS_NUM_THREADS", threads)
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return env


def restart_reason(returncode: int) -> str:
    """Why a model process stopped, as its restart is counted: "exited" (0: it
    drained and exited, as a restart asks), "engine_dead" (its engine broke),
    "killed" (by a signal: SIGKILL of a hung process, the OOM killer) or
    "crashed" (any other exit code)."""
    if returncode == 0:
        return "exited"
    if returncode == ENGINE_DEAD_EXIT:
        return "engine_dead"
    return "killed" if returncode < 0 else "crashed"


def _die_with_parent() -> None:
    """Linux: SIGKILL the model process if its supervisor dies (even by SIGKILL),
    so an orphan never keeps the model's endpoint bound."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ModelProcess(Protocol):
    """What the supervisor uses of its model process (a ``subprocess.Popen``)."""

    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Supervisor:
    """Keeps one model process running. ``spawn`` (default: start
    ``workers.serve``), ``clock`` and ``sleep`` are the outside world it uses."""

    def __init__(
        self,
        model: ModelConfig,
        config_file: str,
        control_endpoint: str,
        *,
        spawn: Callable[[], ModelProcess] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.config_file = config_file
        self.state: SupervisorState = "starting"
        self.restarts = 0
        self.restarts_by_reason: dict[str, int] = {}
        self.message = ""
        self.process: ModelProcess | None = None
        self._spawn = spawn or self._start_model_process
        self._clock = clock
        self._sleep_for = sleep
        self._stopping = False
        self._encoder = Encoder()
        self._ctx = zmq.Context.instance()
        self._push = self._ctx.socket(zmq.PUSH)
        # Status is advisory: never block or pile up when the gateway is away.
        self._push.setsockopt(zmq.SNDHWM, 4)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.IMMEDIATE, 1)
        self._push.connect(control_endpoint)
        self._last_status = 0.0

    def _report(self, state: SupervisorState, message: str = "") -> None:
        if state != self.state or message != self.message:
            log.info("state", model=self.model.name, state=state, message=message or None)
        self.state, self.message = state, message
        self._send_status()

    def _send_status(self) -> None:
        pid = self.process.pid if self.process and self.process.poll() is None else None
        status = SupervisorStatus(
            self.model.name,
            self.state,
            pid,
            self.restarts,
            self.message,
            restarts_by_reason=self.restarts_by_reason,
        )
        with contextlib.suppress(zmq.Again):
            self._push.send(self._encoder.encode(status), zmq.NOBLOCK)
        self._last_status = self._clock()

    def _start_model_process(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "workers.serve", "--config", self.config_file]
        cmd += ["--model", self.model.name]
        return subprocess.Popen(cmd, env=child_env(self.model), preexec_fn=_die_with_parent)

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> int:
        quick_deaths = 0
        backoff = BACKOFF_START_S
        while not self._stopping:
            self.process = self._spawn()
            started = self._clock()
            self._report("running", f"pid {self.process.pid}")
            while not self._stopping and self.process.poll() is None:
                self._tick()
            if self._stopping:
                break
            code = self.process.wait()  # it has exited: its status, at once
            ran = self._clock() - started
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            if ran >= HEALTHY_RUN_S:
                quick_deaths, backoff = 0, BACKOFF_START_S
            quick_deaths += 1
            self.restarts += 1
            reason = restart_reason(code)
            self.restarts_by_reason[reason] = self.restarts_by_reason.get(reason, 0) + 1
            state: SupervisorState = "failed" if quick_deaths >= FAILED_AFTER else "restarting"
            self._report(state, f"model process {how} after {ran:.1f}s; retry in {backoff:.1f}s")
            self._sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._terminate()
        self._report("stopped")
        self._push.close(linger=STOPPED_LINGER_MS)  # time for that last status to go
        return 0

    def _sleep(self, seconds: float) -> None:
        end = self._clock() + seconds
        while not self._stopping and self._clock() < end:
            self._tick()

    def _tick(self) -> None:
        """A moment's wait, with the status repeated every STATUS_EVERY_S."""
        self._sleep_for(TICK_S)
        if self._clock() - self._last_status > STATUS_EVERY_S:
            self._send_status()

    def _terminate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # the model process drains, then exits
        try:
            self.process.wait(timeout=self.model.drain_timeout + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    config, model = model_from_command_line(__doc__, argv)
    setproctitle.setproctitle(f"mlx-gateway supervisor {model.name}")
    configure_logging(f"supervisor:{model.name}", config.gateway.log_format)
    structlog.contextvars.bind_contextvars(model=model.name)
    supervisor = Supervisor(model, config.source, config.gateway.control_endpoint)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    sys.exit(supervisor.run())


if __name__ == "__main__":
    main()
