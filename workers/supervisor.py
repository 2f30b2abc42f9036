"""A model's supervisor: it owns the model process and does what the gateway asks.

``python -m workers.supervisor --model NAME`` is a Procfile entry (or, for a
model added to the config at run time, a child of the gateway). It holds a
DEALER on the gateway's control endpoint: it reports its state there
(:class:`SupervisorStatus`, on every transition and every second) and takes
commands from it: :class:`LoadModel`, :class:`UnloadModel`,
:class:`RestartModel`, :class:`KillModel`. Nothing runs until the gateway
says load; the gateway decides what is loaded (config, memory, requests).

While a load is wanted, a model process that exits is started again with
exponential backoff (a crash, a kill, a drained process, or an engine that
died: ``workers.runtime.ENGINE_DEAD_EXIT``); five quick deaths in a row
report ``failed`` (with the time of the next try), and it keeps retrying
slowly. The supervisor never exits because its model process did: honcho
stops *every* entry when one exits. Unload ends the process (drained first,
unless forced) and reports ``unloaded`` only once its exit is confirmed.
SIGTERM/SIGINT stop the model process (drained, up to the gateway's
``shutdown_timeout``), then the supervisor.

Stopping a model process is done with signals, which it handles: SIGTERM
drains (running jobs finish), SIGINT stops at once (running jobs fail with a
clear 503), SIGKILL is the last resort.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import setproctitle
import structlog
import zmq

from protocol.config import ConfigError, ModelConfig, load_config, model_from_command_line
from protocol.framing import Encoder, FrameError, command_decoder
from protocol.logs import configure_logging
from protocol.messages import (
    KillModel,
    LoadModel,
    RestartModel,
    SupervisorState,
    SupervisorStatus,
    UnloadModel,
)
from workers.blas import openblas_path
from workers.memory import LIMIT_ENV
from workers.runtime import ENGINE_DEAD_EXIT

log = structlog.get_logger()

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
# A process that ran this long before dying resets the backoff.
HEALTHY_RUN_S = 60.0
# This many quick deaths in a row: report "failed" (and keep retrying slowly).
FAILED_AFTER = 5
STATUS_EVERY_S = 1.0
POLL_MS = 50
# After SIGINT (stop now), how long before SIGKILL.
STOP_GRACE_S = 3.0
STOPPED_LINGER_MS = 200


def child_env(model: ModelConfig, memory_limit: int = 0) -> dict[str, str]:
    """The model process's environment: OpenBLAS preloaded, BLAS threads
    capped, and its memory share.

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
    if memory_limit > 0:
        env[LIMIT_ENV] = str(memory_limit)
    else:
        env.pop(LIMIT_ENV, None)
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
    """Linux: SIGKILL this (child) process if its parent dies (even by SIGKILL),
    so an orphan never keeps a model's endpoint or memory."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ModelProcess(Protocol):
    """What the supervisor uses of its model process (a ``subprocess.Popen``)."""

    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Supervisor:
    """Keeps one model process as the gateway asks. ``spawn`` (default: start
    ``workers.serve``), ``clock`` and ``sleep`` (default: wait on the control
    socket) are the outside world it uses."""

    def __init__(
        self,
        model: ModelConfig,
        config_file: str,
        control_endpoint: str,
        *,
        shutdown_timeout: float = 10.0,
        spawn: Callable[[], ModelProcess] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.model = model
        self.config_file = config_file
        self.shutdown_timeout = shutdown_timeout
        self.instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.state: SupervisorState = "unloaded"
        self.restarts = 0
        self.restarts_by_reason: dict[str, int] = {}
        self.message = ""
        self.process: ModelProcess | None = None
        self._spawn = spawn or self._start_model_process
        self._clock = clock
        self._sleep = sleep
        self._started = 0.0  # when the current process was started
        self._want = False  # keep a model process running
        self._memory_limit = 0
        # What the current process's exit means: None (it died), "unload",
        # "restart" (start the next one at once) or "kill" (it hung).
        self._exit_plan: str | None = None
        self._kill_reason = ""
        self._escalation: list[tuple[float, signal.Signals]] = []
        self._retry_at: float | None = None
        self._quick_deaths = 0
        self._backoff = BACKOFF_START_S
        self._stopping = False
        self._encoder = Encoder()
        self._commands = command_decoder()
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        # Status is advisory and repeated: never block or pile up when the
        # gateway is away (IMMEDIATE: nothing is queued for a missing peer).
        self._sock.setsockopt(zmq.SNDHWM, 8)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._sock.connect(control_endpoint)
        self._last_status = 0.0

    # --- reporting ----------------------------------------------------------

    def _report(self, state: SupervisorState, message: str = "") -> None:
        if state != self.state or message != self.message:
            log.info("state", model=self.model.name, state=state, message=message or None)
        self.state, self.message = state, message
        self._send_status()

    def _send_status(self) -> None:
        alive = self.process is not None and self.process.poll() is None
        now = self._clock()
        status = SupervisorStatus(
            self.model.name,
            self.state,
            self.process.pid if alive and self.process is not None else None,
            self.restarts,
            self.message,
            restarts_by_reason=self.restarts_by_reason,
            instance=self.instance,
            host=socket.gethostname(),
            retry_in=max(0.0, self._retry_at - now) if self._retry_at is not None else None,
            uptime=now - self._started if alive else None,
        )
        with contextlib.suppress(zmq.Again):
            self._sock.send(self._encoder.encode(status), zmq.NOBLOCK)
        self._last_status = now

    # --- the model process --------------------------------------------------

    def _refresh_model(self) -> None:
        """Re-read this model's entry: a restart or load picks up its changes."""
        try:
            self.model = load_config(self.config_file).model(self.model.name)
        except ConfigError as exc:
            log.warning("kept the previous config", model=self.model.name, error=str(exc))

    def _start_model_process(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "workers.serve", "--config", self.config_file]
        cmd += ["--model", self.model.name]
        env = child_env(self.model, self._memory_limit)
        return subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)

    def _start(self) -> None:
        self._refresh_model()
        self.process = self._spawn()
        self._started = self._clock()
        self._retry_at = None
        self._report("running", f"pid {self.process.pid}")

    def _signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def _stop_process(self, *, drain: float | None) -> None:
        """Drain (SIGTERM, then SIGINT after ``drain`` s) or stop now (SIGINT);
        SIGKILL if it still runs after a grace."""
        now = self._clock()
        if drain is None or drain <= 0:
            self._signal(signal.SIGINT)
            self._escalation = [(now + STOP_GRACE_S, signal.SIGKILL)]
        else:
            self._signal(signal.SIGTERM)
            self._escalation = [
                (now + drain, signal.SIGINT),
                (now + drain + STOP_GRACE_S, signal.SIGKILL),
            ]

    def _escalate(self) -> None:
        now = self._clock()
        while self._escalation and self._escalation[0][0] <= now:
            _, signum = self._escalation.pop(0)
            log.warning("model process slow to stop", model=self.model.name, signal=signum.name)
            self._signal(signum)

    def _on_exit(self, code: int) -> None:
        assert self.process is not None
        ran = self._clock() - self._started
        plan, self._exit_plan = self._exit_plan, None
        self.process, self._escalation = None, []
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if plan == "unload" or not self._want:
            self._report("unloaded", f"model process {how} after {ran:.1f}s")
            return
        self.restarts += 1
        reason = restart_reason(code)
        self.restarts_by_reason[reason] = self.restarts_by_reason.get(reason, 0) + 1
        if plan == "restart":
            self._retry_at = self._clock()
            self._report("restarting", "restart requested")
            return
        if plan == "kill":
            how = f"killed: {self._kill_reason}" if self._kill_reason else how
        if ran >= HEALTHY_RUN_S:
            self._quick_deaths, self._backoff = 0, BACKOFF_START_S
        self._quick_deaths += 1
        backoff = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        self._retry_at = self._clock() + backoff
        state: SupervisorState = "failed" if self._quick_deaths >= FAILED_AFTER else "restarting"
        self._report(state, f"model process {how} after {ran:.1f}s; retry in {backoff:.1f}s")

    # --- commands -----------------------------------------------------------

    def _receive_commands(self) -> None:
        """Wait a tick for commands, and obey any that came."""
        if self._sleep is None:
            arrived = self._sock.poll(POLL_MS, zmq.POLLIN)
        else:
            arrived = self._sock.poll(0, zmq.POLLIN)
            self._sleep(POLL_MS / 1000)
        if not arrived:
            return
        while True:
            try:
                frame = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                command = self._commands.decode(frame)
            except FrameError as exc:
                log.error("dropped bad control frame", error=str(exc))
                continue
            log.info("command", model=self.model.name, command=type(command).__name__)
            self._obey(command)

    def _obey(self, command: LoadModel | UnloadModel | RestartModel | KillModel) -> None:
        alive = self.process is not None
        match command:
            case LoadModel(memory_limit=limit):
                self._want, self._memory_limit = True, limit
                if alive and self._exit_plan == "unload":
                    self._exit_plan = "restart"  # load again once the unload is done
                elif not alive:
                    self._retry_at = self._clock()  # now, even in a backoff
            case UnloadModel(drain_timeout=drain, force=force):
                self._want = False
                self._retry_at = None
                if not alive:
                    self._report("unloaded", "unloaded")
                    return
                self._exit_plan = "unload"
                self._stop_process(drain=None if force else (drain or self.model.drain_timeout))
                self._report("unloading", "drained, then stopped" if not force else "stopping")
            case RestartModel(graceful=graceful):
                if not self._want:
                    return
                if not alive:
                    self._retry_at = self._clock()
                    return
                self._exit_plan = "restart"
                self._stop_process(drain=self.model.drain_timeout if graceful else None)
            case KillModel(pid=pid, reason=reason):
                if self.process is None or self.process.pid != pid:
                    return
                log.warning("killing the model process", model=self.model.name, pid=pid)
                # Hung while draining for an unload or restart: that plan stands.
                self._exit_plan = self._exit_plan or "kill"
                self._kill_reason = reason
                self._signal(signal.SIGKILL)
        self._send_status()

    # --- main loop ----------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    def _on_signal(self, *_: object) -> None:
        # honcho signals the whole group and the gateway its own children: a
        # second SIGTERM during the exit must not cut the drain short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.stop()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self.serve()

    def serve(self) -> int:
        """Take commands and keep the model process as asked, until stopped."""
        self._send_status()
        while not self._stopping:
            self._receive_commands()
            due = self._retry_at is not None and self._clock() >= self._retry_at
            if self._want and self.process is None and due and not self._stopping:
                self._start()
            if self.process is not None and (code := self.process.poll()) is not None:
                self._on_exit(code)
            self._escalate()
            if self._clock() - self._last_status > STATUS_EVERY_S:
                self._send_status()
        self._terminate()
        self._report("stopped")
        self._sock.close(linger=STOPPED_LINGER_MS)  # time for that last status to go
        return 0

    def _terminate(self) -> None:
        """Shutdown: the model process drains for up to ``shutdown_timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.shutdown_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    config, model = model_from_command_line(__doc__, argv)
    setproctitle.setproctitle(f"mlx-gateway supervisor {model.name}")
    configure_logging(f"supervisor:{model.name}", config.gateway.log_format)
    structlog.contextvars.bind_contextvars(model=model.name)
    supervisor = Supervisor(
        model,
        config.source,
        config.gateway.control_endpoint,
        shutdown_timeout=config.gateway.shutdown_timeout,
    )
    sys.exit(supervisor.run())


if __name__ == "__main__":
    main()
