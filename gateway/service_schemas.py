"""Shapes of the service's own JSON routes (``/health``, ``/admin/...``), as
msgspec Structs for :mod:`gateway.openapi`.

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


class HealthReport(msgspec.Struct):
    status: Literal["ok", "degraded"]
    models: dict[str, ModelHealth]


class RestartAccepted(msgspec.Struct):
    model: str
    pid: int | None
    graceful: bool
    state: Literal["draining", "restarting"]
