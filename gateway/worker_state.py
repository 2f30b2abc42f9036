"""A worker's state as requests see it, from what the gateway knows of it.

Three sources: the connection (up or not), the worker's latest heartbeat
(its own state: loading, ready, failed, draining) and its supervisor's
status (unloaded, unloading, restarting, failed...), plus what the lifecycle
manager set (a load under way; drained by ops). The states:

unloaded, loading, ready, draining, unloading, restarting, unresponsive,
failed, and down (no supervisor reports: none runs, or it is gone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.messages import Pong, SupervisorStatus

# A supervisor reports every second: silent this long, it is gone.
SUPERVISOR_STALE_S = 5.0


@dataclass(frozen=True)
class Seen:
    """What the gateway knows of one worker at a moment."""

    connected: bool
    pong: Pong | None
    pong_age: float  # seconds since the last heartbeat answer
    supervisor: SupervisorStatus | None
    supervisor_age: float  # seconds since its last status
    loading: bool  # a load is under way
    held: bool  # drained by ops: refuses new requests, stays loaded
    heartbeat_limit: float


def state_of(seen: Seen) -> str:
    state = _process_state(seen)
    return "draining" if seen.held and state == "ready" else state


def _process_state(seen: Seen) -> str:
    sup = seen.supervisor
    if sup is not None and sup.state == "unloading":
        return "unloading"
    if seen.connected and seen.pong is not None:
        return "unresponsive" if seen.pong_age > seen.heartbeat_limit else seen.pong.state
    if sup is None:
        return "loading" if seen.connected or seen.loading else "down"
    if seen.supervisor_age > SUPERVISOR_STALE_S and not seen.connected:
        return "down"
    if sup.state in ("restarting", "failed"):
        return sup.state
    if sup.state == "running":
        return "loading" if seen.connected or seen.loading else "restarting"
    if sup.state == "stopped":
        return "down"
    return "loading" if seen.loading else "unloaded"


def reason(name: str, state: str, seen: Seen) -> str:
    """Why a request for the model cannot be served now: its 503's message."""
    pong, sup = seen.pong, seen.supervisor
    if pong is not None and pong.error and state == "failed":
        return f"model {name!r} is unavailable: {pong.error}"
    if sup is not None and state in ("restarting", "failed"):
        detail = f": {sup.message}" if sup.message else ""
        return f"model {name!r} is {state}{detail}"
    if state == "down":
        return f"model {name!r} is unavailable: its worker is not running"
    if state == "unloaded":
        return (
            f"model {name!r} is not loaded; load it with "
            f"POST /admin/models/{name}/load (or `mlx-gateway load {name}`)"
        )
    if state == "unresponsive":
        return (
            f"model {name!r} is unresponsive (no heartbeat for "
            f"{seen.heartbeat_limit:.0f}s); it is being restarted"
        )
    return f"model {name!r} is {state}"


def retry_in(seen: Seen) -> float | None:
    """restarting / failed: seconds until the supervisor tries again."""
    sup = seen.supervisor
    if sup is None or sup.retry_in is None:
        return None
    return max(0.0, sup.retry_in - seen.supervisor_age)


def retry_after(state: str, seen: Seen) -> str | None:
    """The ``Retry-After`` of a 503, for a model expected back by itself."""
    retry = retry_in(seen)
    if state in ("restarting", "failed") and retry is not None:
        return str(max(1, math.ceil(retry)))
    if state in ("loading", "restarting", "unresponsive", "down"):
        return "2"
    return None
