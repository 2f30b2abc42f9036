"""Supervisor processes the gateway runs itself: for models added to the config
while it runs (``POST /admin/reload``), which have no Procfile entry.

Each is ``python -m workers.supervisor --config FILE --model NAME``, the same
program as a Procfile entry, connecting back on the control link. It stays in
the gateway's process group (honcho's SIGTERM reaches it) and dies with the
gateway on Linux even if the gateway is SIGKILLed; the gateway stops it when
the model is removed and when it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import structlog

log = structlog.get_logger()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class SupervisorProcesses:
    def __init__(self, config_file: str) -> None:
        self.config_file = config_file
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    def owns(self, model: str) -> bool:
        return model in self._processes

    def pid(self, model: str) -> int | None:
        process = self._processes.get(model)
        return process.pid if process is not None else None

    async def start(self, model: str) -> None:
        if model in self._processes:
            return
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.supervisor",
            "--config",
            self.config_file,
            "--model",
            model,
            preexec_fn=_die_with_parent,
        )
        self._processes[model] = process
        log.info("started a supervisor", model=model, pid=process.pid)

    async def stop(self, model: str, drain: float) -> None:
        """SIGTERM (its model process drains, up to ``drain`` s), then SIGKILL."""
        process = self._processes.pop(model, None)
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(drain + 2):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("stopped a supervisor", model=model, code=process.returncode)

    async def close(self, drain: float) -> None:
        await asyncio.gather(*(self.stop(m, drain) for m in list(self._processes)))
