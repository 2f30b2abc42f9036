"""GET /health: the gateway is up; each worker's state, process and load."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


async def health(request: Request) -> JSONResponse:
    models: dict[str, Any] = {}
    for name, worker in request.app.state.registry.workers.items():
        pong, sup = worker.pong, worker.supervisor
        models[name] = {
            "state": worker.state,
            "family": worker.model.family,
            "pid": pong.pid if pong else None,
            "in_flight": worker.in_flight,
            "active": pong.stats.active if pong else None,
            "loop_steps": pong.steps if pong else None,
            "restarts": sup.restarts if sup else None,
            "error": worker.unavailable_reason() if worker.state != "ready" else None,
        }
    ready = all(m["state"] == "ready" for m in models.values())
    return JSONResponse({"status": "ok" if ready else "degraded", "models": models})
