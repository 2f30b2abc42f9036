"""GET /v1/queue/stats: mlx-openai-server-lab's queue figures, per model.

Clients written for that server (the Avatar Debate notes point theirs at it)
read ``status`` and ``queue_stats``; here ``queue_stats`` sums every model and
``models`` has each one's: ``active`` (running in its worker), ``pending``
(sent, waiting for a slot, plus any waiting for its load) and ``processed``
(finished since the gateway started).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


async def queue_stats(request: Request) -> JSONResponse:
    models: dict[str, dict[str, Any]] = {}
    for name, worker in request.app.state.registry.workers.items():
        stats = worker.pong.stats if worker.pong is not None else None
        active = stats.active if stats is not None else 0
        models[name] = {
            "state": worker.state,
            "active": active,
            "pending": max(0, worker.in_flight - active) + worker.waiting,
            "processed": worker.processed,
            "max_pending": worker.model.max_pending,
        }
    totals = {
        "running": any(m["state"] == "ready" for m in models.values()),
        "active_requests": sum(m["active"] for m in models.values()),
        "queue_size": sum(m["pending"] for m in models.values()),
        "max_queue_size": sum(m["max_pending"] for m in models.values()),
        "processed": sum(m["processed"] for m in models.values()),
    }
    return JSONResponse({"status": "ok", "queue_stats": totals, "models": models})
