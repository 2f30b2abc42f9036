"""A worker's state from the connection, its heartbeat and its supervisor's status."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.worker_state import Seen, reason, retry_after, state_of
from protocol.messages import Pong, SupervisorStatus, WorkerStats


def seen(**kw: Any) -> Seen:
    base: dict[str, Any] = {
        "connected": False,
        "pong": None,
        "pong_age": 0.0,
        "supervisor": None,
        "supervisor_age": 0.0,
        "loading": False,
        "held": False,
        "heartbeat_limit": 10.0,
    }
    return Seen(**(base | kw))


def pong(state: str = "ready", error: str | None = None) -> Pong:
    return Pong(0, "i", 7, "m", "llm", state, 0, WorkerStats(), error=error)  # type: ignore[arg-type]


def sup(state: str, **kw: Any) -> SupervisorStatus:
    return SupervisorStatus("m", state, None, 0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "state"),
    [
        ({}, "down"),  # no supervisor has reported
        ({"supervisor": sup("unloaded")}, "unloaded"),
        ({"supervisor": sup("unloaded"), "loading": True}, "loading"),
        ({"supervisor": sup("running"), "loading": True}, "loading"),
        ({"supervisor": sup("running")}, "restarting"),  # its process went away
        ({"supervisor": sup("restarting")}, "restarting"),
        ({"supervisor": sup("failed")}, "failed"),
        ({"supervisor": sup("running"), "supervisor_age": 9.0}, "down"),  # gone silent
        ({"connected": True, "pong": pong(), "supervisor": sup("running")}, "ready"),
        ({"connected": True, "pong": pong("failed")}, "failed"),
        ({"connected": True, "pong": pong(), "pong_age": 11.0}, "unresponsive"),
        ({"connected": True, "pong": pong(), "held": True}, "draining"),
        ({"connected": True, "pong": pong(), "supervisor": sup("unloading")}, "unloading"),
        ({"connected": True}, "loading"),  # connected, no heartbeat answer yet
    ],
)
def test_state(facts: dict[str, Any], state: str) -> None:
    assert state_of(seen(**facts)) == state


def test_a_failed_crash_loop_says_why_and_when_it_is_retried() -> None:
    facts = seen(supervisor=sup("failed", message="exited with code 1", retry_in=4.2))
    assert reason("m", "failed", facts) == "model 'm' is failed: exited with code 1"
    assert retry_after("failed", facts) == "5"
    later = seen(supervisor=sup("failed", retry_in=4.2), supervisor_age=4.0)
    assert retry_after("failed", later) == "1"


def test_a_load_failure_names_its_cause() -> None:
    facts = seen(connected=True, pong=pong("failed", error="no such folder"))
    assert reason("m", "failed", facts) == "model 'm' is unavailable: no such folder"


def test_unloaded_says_how_to_load_and_has_no_retry_after() -> None:
    facts = seen(supervisor=sup("unloaded"))
    assert "POST /admin/models/m/load" in reason("m", "unloaded", facts)
    assert retry_after("unloaded", facts) is None
