"""SIGTERM to honcho (what Ctrl-C on `make run` does): new requests are refused,
the running one finishes, and no process of the stack is left after 5 s."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.harness import free_port, running_stack
from tests.workers.embeddings_helpers import MINILM

HI = [{"role": "user", "content": "hi"}]


def descendants(root: int) -> set[tuple[int, str]]:
    """Every process under ``root``, as (pid, start time): a pid reused later is
    another process."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def running(process: tuple[int, str]) -> bool:
    try:
        fields = Path(f"/proc/{process[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == process[1] and fields[0] != "Z"


def test_sigterm_finishes_the_running_request_then_leaves_no_process_behind(
    demo_models: dict[str, Path], tmp_path: Path
) -> None:
    llama = {"name": "chat", "family": "llm", "path": str(demo_models["demo-llama-tiny"])}
    lazy = {"name": "lazy", "family": "embeddings", "path": MINILM, "load": "on_demand"}
    with running_stack([llama, lazy], tmp_path, ready=["chat"]) as stack:
        url = stack.base_url
        assert httpx.post(f"{url}/v1/embeddings", json={"model": "lazy", "input": "x"}).is_success
        # A model added at run time: its supervisor is the gateway's own child.
        stack.config.write_text(
            stack.config.read_text()
            + f'\n[[models]]\nname = "added"\nfamily = "embeddings"\npath = "{MINILM}"\n'
            + f'endpoint = "tcp://127.0.0.1:{free_port()}"\n'
        )
        assert httpx.post(f"{url}/admin/reload").json()["added"] == ["added"]
        stack.wait_state("added", "ready")
        processes = descendants(stack.process.pid)
        titles = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in processes]
        assert sum(b"mlx-gateway worker" in t for t in titles) == 3

        answer: list[openai.types.chat.ChatCompletion] = []
        with stack.openai_client() as client:
            request = threading.Thread(
                target=lambda: answer.append(
                    client.chat.completions.create(
                        model="chat", messages=HI, max_tokens=300, temperature=0
                    )
                )
            )
            request.start()
            stack.wait_until(lambda h: h["models"]["chat"]["active"] == 1, 10, "it to run")
            os.kill(stack.process.pid, signal.SIGTERM)
            terminated = time.monotonic()
            deadline = terminated + 3
            while True:  # new requests are refused
                try:
                    httpx.get(f"{url}/health", timeout=1)
                except httpx.TransportError:
                    break
                assert time.monotonic() < deadline, "still accepting connections"
                time.sleep(0.05)
            request.join(30)
        assert answer and answer[0].choices[0].finish_reason == "length"
        assert answer[0].usage is not None and answer[0].usage.completion_tokens == 300

        while any(running(p) for p in processes):
            left = [p for p in processes if running(p)]
            if time.monotonic() - terminated > 5:
                pytest.fail(f"still running 5 s after SIGTERM: {left}")
            time.sleep(0.05)
