"""`mlx-gateway`: each command is one admin call; `models` prints a table."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cli import _parser, _request, table


def call(*argv: str) -> tuple[str, str, dict[str, Any] | None]:
    return _request(_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["models"], ("GET", "/admin/models", None)),
        (["show", "m"], ("GET", "/admin/models/m", None)),
        (
            ["load", "m", "--no-wait", "--evict"],
            ("POST", "/admin/models/m/load", {"wait": False, "timeout_s": None, "evict": True}),
        ),
        (
            ["unload", "m", "--force", "--drain-timeout", "3"],
            (
                "POST",
                "/admin/models/m/unload",
                {"drain_timeout_s": 3.0, "force": True, "wait": True},
            ),
        ),
        (["restart", "m", "--now"], ("POST", "/admin/models/m/restart", {"graceful": False})),
        (["drain", "m"], ("POST", "/admin/models/m/drain", None)),
        (["resume", "m"], ("POST", "/admin/models/m/resume", None)),
        (
            ["set", "m", "--pinned", "yes", "--ttl", "never", "--max-pending", "4"],
            ("PATCH", "/admin/models/m", {"pinned": True, "ttl": None, "max_pending": 4}),
        ),
        (["memory"], ("GET", "/admin/memory", None)),
        (["reload"], ("POST", "/admin/reload", None)),
    ],
)
def test_each_command_is_one_admin_call(argv: list[str], expected: tuple[Any, ...]) -> None:
    assert call(*argv) == expected


def test_the_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_GATEWAY_PORT", "9001")
    monkeypatch.setenv("MLX_GATEWAY_ADMIN_KEY", "sk-admin")
    args = _parser().parse_args(["models"])
    assert args.url == "http://127.0.0.1:9001" and args.key == "sk-admin"


def test_models_is_a_table_of_state_pid_memory_and_error() -> None:
    model = {
        "name": "demo",
        "family": "llm",
        "state": "failed",
        "pid": None,
        "uptime_s": None,
        "restarts": 5,
        "in_flight": 0,
        "memory": {"reserved": 0, "estimate": 1_500_000_000},
        "last_error": "model process exited with code 1",
    }
    header, row = table([model]).splitlines()
    assert header.split()[:3] == ["MODEL", "FAMILY", "STATE"]
    assert row.split()[:8] == ["demo", "llm", "failed", "-", "-", "5", "0", "1.50"]
    assert row.endswith("model process exited with code 1")
