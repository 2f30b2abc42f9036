"""A real gateway with real supervised worker processes, started as `make run`
starts them: honcho on the Procfile generated from a config."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"  # Node.js clients, installed by scripts/setup.sh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    path: Path, port: int, models: list[dict[str, Any]], gateway: dict[str, Any] | None = None
) -> None:
    lines = [
        "[gateway]",
        f"port = {port}",
        f'control_endpoint = "tcp://127.0.0.1:{free_port()}"',
        "heartbeat_interval = 0.2",
        *(f"{key} = {_toml(value)}" for key, value in (gateway or {}).items()),
        "",
    ]
    for m in models:
        lines.append("[[models]]")
        for key, value in m.items():
            if key == "options":
                continue
            lines.append(f"{key} = {_toml(value)}")
        lines.append(f'endpoint = "tcp://127.0.0.1:{free_port()}"')
        if "options" in m:
            lines.append("[models.options]")
            lines += [f"{k} = {_toml(v)}" for k, v in m["options"].items()]
        lines.append("")
    path.write_text("\n".join(lines))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


class Stack:
    """honcho + gateway + supervisors + model processes, torn down together."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        procfile = config.with_suffix(".Procfile")
        procfile.write_text(
            subprocess.check_output(
                [sys.executable, "-m", "gateway.procfile", "--config", str(config)],
                cwd=ROOT,
                text=True,
            )
        )
        env = dict(os.environ, MLX_GATEWAY_CONFIG=str(config), MLX_GATEWAY_PORT=str(port))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "honcho", "--procfile", str(procfile), "--app-root", str(ROOT)]
            + ["start"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log = log

    def openai_client(self) -> openai.OpenAI:
        """The official SDK pointed at this stack, without retries: tests check
        the first answer, 503s included."""
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0)

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/health", timeout=5).json()

    def wait_until(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"honcho exited; log:\n{self.log.read_text()[-4000:]}")
            try:
                last = self.health()
                if predicate(last):
                    return last
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"{what}: last health {last}; log:\n{self.log.read_text()[-4000:]}")

    def wait_state(self, model: str, state: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_until(
            lambda h: h["models"][model]["state"] == state, timeout, f"{model} to be {state}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def node_script(script: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run tests/js/SCRIPT ARGS with Node.js; the JSON object it printed last."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "openai").is_dir():
        # scripts/setup.sh installs tests/js's packages wherever Node.js exists.
        pytest.fail("Node.js and tests/js/node_modules are needed (run scripts/setup.sh)")
    done = subprocess.run(
        [node, str(JS / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def running_stack(
    entries: list[dict[str, Any]],
    workdir: Path,
    *,
    gateway: dict[str, Any] | None = None,
    ready: list[str] | None = None,
    timeout: float = 120,
) -> Iterator[Stack]:
    """A real stack (honcho, gateway, one supervised worker per ``[[models]]``
    entry) with its config in ``workdir``; the models in ``ready`` (default:
    all) ready before it is yielded; always torn down, also on errors and Ctrl-C."""
    config, port = workdir / "gateway.toml", free_port()
    write_config(config, port, entries, gateway)
    stack = Stack(config, port, workdir / "honcho.log")
    try:
        for name in ready if ready is not None else [e["name"] for e in entries]:
            stack.wait_state(name, "ready", timeout=timeout)
        yield stack
    finally:
        stack.stop()
