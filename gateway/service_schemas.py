"""Shapes of the service's own JSON routes (``/health...``, ``/v1/queue/stats``,
the admin restart), as msgspec Structs for :mod:`gateway.openapi` (the other
admin shapes are in :mod:`gateway.admin_views`).

Their handlers build plain dicts; ``tests/gateway/test_openapi.py`` checks
the answers they give against these.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class ModelHealth(msgspec.Struct):
    state: str
    family: str
    pid: int | None
    in_flight: int
    active: int | None
    loop_steps: int | None
    restarts: int | None
    # Why it is not ready (its 503's message), or null.
    error: str | None
    # Seconds since its loop last answered a heartbeat; null: no process.
    loop_age_s: float | None = None


class HealthReport(msgspec.Struct):
    status: Literal["ok", "degraded"]
    models: dict[str, ModelHealth]
    # How late the gateway's own event loop runs its timers.
    loop_lag_s: float = 0.0


class LiveReport(msgspec.Struct):
    status: Literal["ok"]
    loop_lag_s: float
    # Seconds since the loop monitor last ticked.
    loop_age_s: float


class ReadyReport(msgspec.Struct):
    """200 ``ready`` with the startup and pinned models; 503 ``not_ready``
    with those that are not ready (``waiting``)."""

    status: Literal["ready", "not_ready"]
    models: dict[str, str] = {}
    waiting: dict[str, str] = {}


class ModelQueue(msgspec.Struct):
    state: str
    active: int
    # Sent and waiting for a slot, or waiting for the model to load.
    pending: int
    processed: int
    max_pending: int


class QueueTotals(msgspec.Struct):
    running: bool
    active_requests: int
    queue_size: int
    max_queue_size: int
    processed: int


class QueueStats(msgspec.Struct):
    """mlx-openai-server-lab's ``/v1/queue/stats``, with each model's figures."""

    status: Literal["ok"]
    queue_stats: QueueTotals
    models: dict[str, ModelQueue]


class RestartAccepted(msgspec.Struct):
    model: str
    pid: int | None
    graceful: bool
    state: Literal["draining", "restarting"]
