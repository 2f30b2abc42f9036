"""Health probes: /health/live, /health/ready, and /health (each worker).

- ``/health/live``: the gateway's event loop runs (its lag is measured by a
  ticking task: a loop blocked by something answers nothing at all).
- ``/health/ready``: 200 only when every model that should be loaded (load
  "startup", or pinned) is ready; 503 listing the others.
- ``/health``: each worker's state, process, load and loop age.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

TICK_S = 0.25


class LoopMonitor:
    """How late the gateway's event loop runs a timer: its lag."""

    def __init__(self) -> None:
        self.lag = 0.0
        self.last_tick = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK_S)
            self.last_tick = time.monotonic()
            self.lag = max(0.0, self.last_tick - before - TICK_S)


async def live(request: Request) -> JSONResponse:
    monitor: LoopMonitor = request.app.state.loop_monitor
    return JSONResponse(
        {
            "status": "ok",
            "loop_lag_s": round(monitor.lag, 4),
            "loop_age_s": round(time.monotonic() - monitor.last_tick, 3),
        }
    )


async def ready(request: Request) -> JSONResponse:
    required, waiting = {}, {}
    for name, worker in request.app.state.registry.workers.items():
        model = worker.model
        if model.load == "startup" or model.pinned:
            required[name] = worker.state
            if worker.state != "ready":
                waiting[name] = worker.state
    if waiting:
        return JSONResponse({"status": "not_ready", "waiting": waiting}, status_code=503)
    return JSONResponse({"status": "ready", "models": required})


async def health(request: Request) -> JSONResponse:
    models: dict[str, Any] = {}
    for name, worker in request.app.state.registry.workers.items():
        pong, sup = worker.pong, worker.supervisor
        age = worker.loop_age
        models[name] = {
            "state": worker.state,
            "family": worker.model.family,
            "pid": pong.pid if pong else None,
            "in_flight": worker.in_flight,
            "active": pong.stats.active if pong else None,
            "loop_steps": pong.steps if pong else None,
            "loop_age_s": round(age, 3) if age is not None else None,
            "restarts": sup.restarts if sup else None,
            "error": worker.unavailable_reason() if worker.state != "ready" else None,
        }
    ready = all(m["state"] == "ready" for m in models.values())
    monitor: LoopMonitor = request.app.state.loop_monitor
    return JSONResponse(
        {
            "status": "ok" if ready else "degraded",
            "loop_lag_s": round(monitor.lag, 4),
            "models": models,
        }
    )
