"""Models loaded and unloaded at run time, against a real stack: on-demand
loads, manual loads, ttl, memory admission with LRU eviction, reload, the CLI.

The stack's chat model loads at startup (pinned); the embeddings models
(fast to load) only when asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import ROOT, Stack, free_port, running_stack
from tests.workers.embeddings_helpers import MINILM

CHAT, LAZY, OTHER, MANUAL, SHORT = "chat", "lazy", "other", "manual", "short-lived"
ADDED = "added-later"


def embeddings(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "family": "embeddings", "path": MINILM, **kw}


@pytest.fixture(scope="module")
def stack(
    demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("lifecycle-stack")
    models = [
        {
            "name": CHAT,
            "family": "llm",
            "path": str(demo_models["demo-llama-tiny"]),
            "pinned": True,
        },
        embeddings(LAZY, load="on_demand"),
        embeddings(OTHER, load="on_demand"),
        embeddings(MANUAL, load="manual"),
        embeddings(SHORT, load="on_demand", ttl=2.0),
    ]
    with running_stack(models, tmp, ready=[CHAT]) as stack:
        yield stack


def admin(stack: Stack, method: str, path: str, **body: Any) -> httpx.Response:
    return httpx.request(method, f"{stack.base_url}/admin{path}", json=body or None, timeout=120)


def view(stack: Stack, name: str) -> dict[str, Any]:
    reply = admin(stack, "GET", f"/models/{name}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def embed(stack: Stack, model: str) -> httpx.Response:
    body = {"model": model, "input": "a sentence"}
    return httpx.post(f"{stack.base_url}/v1/embeddings", json=body, timeout=120)


def wait_state(stack: Stack, name: str, state: str, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while (current := view(stack, name))["state"] != state:
        assert time.monotonic() < deadline, f"{name} is {current['state']}, not {state}"
        time.sleep(0.05)
    return current


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--url", stack.base_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_admin_lists_every_model_with_its_state_and_memory(stack: Stack) -> None:
    models = {m["name"]: m for m in admin(stack, "GET", "/models").json()["data"]}
    assert set(models) == {CHAT, LAZY, OTHER, MANUAL, SHORT}
    chat = models[CHAT]
    assert chat["state"] == "ready" and chat["pinned"] and chat["load"] == "startup"
    assert chat["pid"] and chat["uptime_s"] > 0 and chat["loop_age_s"] < 2
    assert chat["memory"]["rss"] > 0 and chat["memory"]["reserved"] > 0
    assert chat["heartbeat_timeout"] == 10.0 and chat["supervisor"]["state"] == "running"
    assert models[MANUAL]["state"] == "unloaded" and models[MANUAL]["pid"] is None
    assert models[MANUAL]["memory"]["reserved"] == 0 and models[MANUAL]["memory"]["estimate"] > 0
    ready = httpx.get(f"{stack.base_url}/health/ready")  # startup and pinned models only
    assert ready.status_code == 200 and ready.json()["models"] == {CHAT: "ready"}
    assert httpx.get(f"{stack.base_url}/health/live").json()["status"] == "ok"


def test_a_request_for_an_on_demand_model_loads_it_and_the_state_shows_meanwhile(
    stack: Stack,
) -> None:
    assert view(stack, LAZY)["state"] == "unloaded"
    seen: set[str] = set()
    answer: list[httpx.Response] = []
    request = threading.Thread(target=lambda: answer.append(embed(stack, LAZY)))
    request.start()
    while request.is_alive():
        seen.add(view(stack, LAZY)["state"])
        time.sleep(0.02)
    assert answer[0].status_code == 200, answer[0].text
    assert len(answer[0].json()["data"][0]["embedding"]) == 384
    assert "loading" in seen
    assert view(stack, LAZY)["state"] == "ready"


def test_an_unloaded_manual_model_is_503_until_loaded_and_unload_frees_it(stack: Stack) -> None:
    refused = embed(stack, MANUAL)
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (
        error["code"] == "model_not_loaded" and f"/admin/models/{MANUAL}/load" in error["message"]
    )

    loaded = cli(stack, "load", MANUAL)
    assert loaded.returncode == 0, loaded.stderr
    assert embed(stack, MANUAL).status_code == 200
    pid = view(stack, MANUAL)["pid"]
    table = cli(stack, "models")
    assert table.returncode == 0 and any(
        line.split()[:3] == [MANUAL, "embeddings", "ready"] for line in table.stdout.splitlines()
    )

    unloaded = cli(stack, "unload", MANUAL)
    assert unloaded.returncode == 0, unloaded.stderr
    after = view(stack, MANUAL)
    assert after["state"] == "unloaded" and after["memory"]["reserved"] == 0
    assert not alive(pid)  # released only once the process is gone
    assert embed(stack, MANUAL).status_code == 503


def test_an_idle_model_past_its_ttl_unloads_and_the_next_request_loads_it_again(
    stack: Stack,
) -> None:
    assert embed(stack, SHORT).status_code == 200
    served = time.monotonic()
    first = view(stack, SHORT)
    assert first["state"] == "ready" and first["ttl"] == 2.0
    wait_state(stack, SHORT, "unloaded", within=10)
    assert time.monotonic() - served >= 2.0
    assert not alive(first["pid"])
    again = embed(stack, SHORT)
    assert again.status_code == 200, again.text
    assert view(stack, SHORT)["pid"] != first["pid"]


def _with_gateway_setting(config: Path, line: str) -> str:
    original = config.read_text()
    config.write_text(original.replace("[gateway]\n", f"[gateway]\n{line}\n", 1))
    return original


def test_a_load_over_the_budget_is_409_and_lru_evicts_exactly_the_oldest_idle_model(
    stack: Stack,
) -> None:
    for name in (LAZY, OTHER):  # LAZY used first: the least recently used
        assert embed(stack, name).status_code == 200
    wait_state(stack, SHORT, "unloaded", within=10)  # not freeing memory by itself meanwhile
    memory = admin(stack, "GET", "/memory").json()
    need = memory["models"][MANUAL]["need"]
    budget = memory["reserved"] + need - 10**6  # MANUAL fits only if something goes
    original = _with_gateway_setting(stack.config, f"memory_budget = {budget}")
    try:
        reloaded = admin(stack, "POST", "/reload").json()
        assert reloaded["added"] == reloaded["removed"] == reloaded["restarted"] == []
        assert admin(stack, "GET", "/memory").json()["budget"] == budget

        refused = admin(stack, "POST", f"/models/{MANUAL}/load", evict=False)
        assert refused.status_code == 409, refused.text
        message = refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "insufficient_memory"
        assert f"needs {need / 1e9:.2f} GB" in message and f"{budget / 1e9:.2f} GB" in message
        assert LAZY in message and OTHER in message and CHAT not in message  # pinned
        assert view(stack, LAZY)["state"] == view(stack, OTHER)["state"] == "ready"

        loaded = admin(stack, "POST", f"/models/{MANUAL}/load", evict=True)
        assert loaded.status_code == 200 and loaded.json()["state"] == "ready", loaded.text
        assert view(stack, LAZY)["state"] == "unloaded"
        assert "evicted" in view(stack, LAZY)["last_error"]
        assert view(stack, OTHER)["state"] == view(stack, CHAT)["state"] == "ready"
    finally:
        stack.config.write_text(original)
        assert admin(stack, "POST", "/reload").status_code == 200
        admin(stack, "POST", f"/models/{MANUAL}/unload")


def test_reload_adds_a_model_without_touching_the_others_and_removes_it(stack: Stack) -> None:
    chat_pid = view(stack, CHAT)["pid"]
    original = stack.config.read_text()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stack.config.write_text(
        original
        + f'\n[[models]]\nname = "{ADDED}"\nfamily = "embeddings"\npath = "{MINILM}"\n'
        + f'endpoint = "{endpoint}"\n'
    )
    try:
        result = admin(stack, "POST", "/reload").json()
        assert result["added"] == [ADDED] and result["removed"] == []
        added = wait_state(stack, ADDED, "ready", within=60)
        assert added["supervisor"]["owner"] == "gateway"
        assert embed(stack, ADDED).status_code == 200
        assert view(stack, CHAT)["pid"] == chat_pid  # untouched
        supervisor = _parent(added["pid"])
    finally:
        stack.config.write_text(original)
    result = admin(stack, "POST", "/reload").json()
    assert result["removed"] == [ADDED]
    assert embed(stack, ADDED).status_code == 404
    deadline = time.monotonic() + 15
    while alive(supervisor) or alive(added["pid"]):
        assert time.monotonic() < deadline, "the removed model's processes are still running"
        time.sleep(0.05)
    assert view(stack, CHAT)["pid"] == chat_pid


def test_twenty_load_unload_cycles_leave_gateway_and_supervisor_memory_flat(
    stack: Stack,
) -> None:
    def cycle() -> None:
        assert admin(stack, "POST", f"/models/{MANUAL}/load").status_code == 200
        assert embed(stack, MANUAL).status_code == 200
        assert admin(stack, "POST", f"/models/{MANUAL}/unload").status_code == 200

    admin(stack, "POST", f"/models/{MANUAL}/load")
    supervisor = _parent(view(stack, MANUAL)["pid"])
    gateway = _gateway_pid(stack)
    admin(stack, "POST", f"/models/{MANUAL}/unload")
    for _ in range(2):  # warm up: first-use allocations are not a leak
        cycle()
    before = _rss(gateway), _rss(supervisor)
    for _ in range(20):
        cycle()
    after = _rss(gateway), _rss(supervisor)
    assert after[0] - before[0] < 8 * 2**20, f"gateway RSS {before[0]} -> {after[0]}"
    assert after[1] - before[1] < 2 * 2**20, f"supervisor RSS {before[1]} -> {after[1]}"
    assert view(stack, MANUAL)["restarts"] == 0


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) * 1024


def _gateway_pid(stack: Stack) -> int:
    out = subprocess.check_output(["pgrep", "-f", f"mlx-gateway gateway 127.0.0.1:{stack.port}"])
    return int(out.split()[0])


def test_queue_stats_and_process_time_on_every_response(stack: Stack) -> None:
    reply = httpx.get(f"{stack.base_url}/v1/queue/stats")
    assert reply.status_code == 200
    stats = reply.json()
    assert stats["status"] == "ok" and stats["queue_stats"]["running"] is True
    assert set(stats["models"][CHAT]) >= {"active", "pending", "processed"}
    for response in (reply, httpx.get(f"{stack.base_url}/nope"), embed(stack, "nope")):
        assert float(response.headers["x-process-time"]) >= 0
