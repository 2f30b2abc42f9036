"""Workers that hang or keep crashing, against a real stack.

A model process stopped with SIGSTOP is alive (its socket stays connected)
but its loop answers nothing: after its heartbeat_timeout its requests end
with a 503, its supervisor SIGKILLs it and starts a new one; the other model
serves throughout. A process that dies at every start backs off and ends in
``failed``, whose 503s carry ``Retry-After``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import Stack, running_stack

STUCK, OTHER, CRASHY = "stuck", "other", "crashy"
HEARTBEAT_TIMEOUT = 2.0
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def taken_port() -> Iterator[int]:
    """A port held by the test: the crashy model's process cannot bind it, so it
    exits at every start."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(
    demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, taken_port: int
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stuck-stack")
    llama = str(demo_models["demo-llama-tiny"])
    models: list[dict[str, Any]] = [
        {
            "name": STUCK,
            "family": "llm",
            "path": llama,
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "options": {"context_length": 100_000},
        },
        {"name": OTHER, "family": "llm", "path": str(demo_models["demo-qwen2-tiny"])},
        {"name": CRASHY, "family": "llm", "path": llama, "load": "manual"},
    ]
    with running_stack(models, tmp, ready=[STUCK, OTHER]) as stack:
        config = stack.config.read_text()
        start = config.index(f'name = "{CRASHY}"')
        at = config.index("endpoint = ", start)
        end = config.index("\n", at)
        stack.config.write_text(
            config[:at] + f'endpoint = "tcp://127.0.0.1:{taken_port}"' + config[end:]
        )
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def model(stack: Stack, name: str) -> dict[str, Any]:
    return httpx.get(f"{stack.base_url}/admin/models/{name}", timeout=10).json()


def back_ready(stack: Stack, name: str, old_pid: int, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        now = model(stack, name)
        if now["state"] == "ready" and now["pid"] != old_pid:
            return now
        assert time.monotonic() < deadline, f"{name} is {now['state']}: not back"
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


class Stream(threading.Thread):
    """A long greedy stream in the background: how it ended, and when."""

    def __init__(self, client: openai.OpenAI, model: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            for chunk in self.client.chat.completions.create(
                model=self.model,
                messages=HI,
                max_tokens=self.max_tokens,
                temperature=0,
                stream=True,
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    self.started.set()
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            self.error = exc
        self.ended_at = time.monotonic()
        self.started.set()


def test_a_stopped_worker_mid_stream_is_503_in_time_killed_and_back_others_untouched(
    stack: Stack, client: openai.OpenAI
) -> None:
    before, other_before = model(stack, STUCK), model(stack, OTHER)
    stuck = Stream(client, STUCK, 50_000)
    other = Stream(client, OTHER, 400)
    stuck.start()
    other.start()
    assert stuck.started.wait(30) and other.started.wait(30)

    os.kill(before["pid"], signal.SIGSTOP)
    stopped_at = time.monotonic()
    stuck.join(HEARTBEAT_TIMEOUT + 5)
    assert not stuck.is_alive(), "the stream on the stopped worker hangs"
    assert isinstance(stuck.error, openai.APIError)
    assert STUCK in str(stuck.error)
    assert stuck.ended_at - stopped_at < HEARTBEAT_TIMEOUT + 1

    after = back_ready(stack, STUCK, before["pid"])
    assert gone(before["pid"])  # SIGKILLed by its supervisor
    assert after["restarts"] == before["restarts"] + 1
    assert "no heartbeat" in (after["last_error"] or "")
    other.join(60)
    assert other.error is None  # the other model never noticed
    assert model(stack, OTHER)["pid"] == other_before["pid"]
    reply = client.chat.completions.create(model=STUCK, messages=HI, max_tokens=3)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1


def test_a_request_to_a_stopped_idle_worker_is_503_in_time_and_it_comes_back(
    stack: Stack, client: openai.OpenAI
) -> None:
    before = back_ready(stack, STUCK, 0)
    os.kill(before["pid"], signal.SIGSTOP)
    stopped_at = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=STUCK, messages=HI, max_tokens=3)
    assert err.value.status_code == 503 and STUCK in err.value.message
    assert time.monotonic() - stopped_at < HEARTBEAT_TIMEOUT + 1
    back_ready(stack, STUCK, before["pid"])
    assert gone(before["pid"])
    assert client.chat.completions.create(model=OTHER, messages=HI, max_tokens=3).usage


def test_a_crash_loop_backs_off_and_ends_failed_with_retry_after(stack: Stack) -> None:
    started = httpx.post(
        f"{stack.base_url}/admin/models/{CRASHY}/load", json={"wait": False}, timeout=10
    )
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while (now := model(stack, CRASHY))["state"] != "failed":
        assert time.monotonic() < deadline, f"not failed: {now}"
        time.sleep(0.1)
    assert now["restarts"] >= 5 and "exited with code 1" in now["last_error"]
    assert now["retry_in_s"] is not None and now["retry_in_s"] > 0

    body = {"model": CRASHY, "messages": HI, "max_tokens": 2}
    refused = httpx.post(f"{stack.base_url}/v1/chat/completions", json=body, timeout=10)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert CRASHY in refused.json()["error"]["message"]
    assert "failed" in refused.json()["error"]["message"]

    unloaded = httpx.post(f"{stack.base_url}/admin/models/{CRASHY}/unload", timeout=30)
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "unloaded"
    assert model(stack, OTHER)["state"] == "ready"
