"""Pieces shared by the benchmarks: environment, stack, HTTP/SSE client, CPU meter.

Import this module before anything imports ``mlx.core``: it sets the BLAS
environment and preloads OpenBLAS exactly as the supervisor launches workers
(one thread, loaded first), so in-process runs use the same BLAS as the workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import msgspec

from workers.blas import preload_openblas

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
OPENBLAS = preload_openblas()

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ is not an installed package
from tests.e2e.harness import Stack, free_port, running_stack  # noqa: E402, F401 (re-exported)

CHAT_PATH = "/v1/chat/completions"
# The short chat of the throughput benchmarks.
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Write a short poem about the sea."},
]


# --- statistics -------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so ``finally`` blocks stop the servers a script started
    (Ctrl-C already does, as KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:.1f}" if seconds is not None else "n/a"


# --- models and the stack ---------------------------------------------------


def model_folder(name: str) -> Path:
    """``models/<name>``; the offline demo models are created if missing."""
    path = ROOT / "models" / name
    if not path.is_dir():
        from demos.llm import ensure_demo_models

        ensure_demo_models(ROOT / "models")
    if not path.is_dir():
        raise SystemExit(f"no model folder {path}")
    return path


# --- streaming client ---------------------------------------------------------


@dataclass
class StreamResult:
    ttft_s: float | None = None
    connect_s: float | None = None  # until the TCP connection was established
    first_content_at: float | None = None
    last_content_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # usage.prompt_tokens_details.cached_tokens, when given
    content_chars: int = 0
    text: list[str] | None = None  # the content chunks, if asked for (a list to fill)
    error: str | None = None


class Client(Protocol):
    async def stream(self, body: bytes) -> StreamResult: ...

    async def aclose(self) -> None: ...


class RawClient:
    """A minimal HTTP/1.1 client on asyncio streams, one connection per request.

    The client shares the 2 cores with the stack it measures, and every cycle
    it burns comes out of the worker's: measured here, httpx (h11, httpcore,
    anyio) spent 30-60 us of CPU per generated token, this client 7-20.

    It reads a chunked body (uvicorn) or one delimited by the connection's close
    (``http.server``, which ``mlx_lm.server`` uses, answers in HTTP/1.0).
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str = CHAT_PATH,
        timeout: float = 300,
        keep_text: bool = False,
    ) -> None:
        self.host, self.port, self.path = host, port, path.encode()
        self.timeout = timeout
        self.keep_text = keep_text

    async def stream(self, body: bytes) -> StreamResult:
        result = StreamResult(text=[] if self.keep_text else None)
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await self._stream(body, result, sent)
        except TimeoutError:
            result.error = f"no end of stream after {self.timeout:.0f}s"
        return result

    async def _stream(self, body: bytes, result: StreamResult, sent: float) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            result.error = f"connect: {exc}"
            return
        result.connect_s = time.perf_counter() - sent
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (self.path, len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200":
                result.error = f"HTTP {status.decode()}: {(await reader.read(300)).decode()}"
                return
            if b"transfer-encoding: chunked" in head.lower():
                await feed_sse(_chunked_body(reader), result, sent)
            elif head.startswith(b"HTTP/1.0"):
                await feed_sse(_body_to_eof(reader), result, sent)
            else:
                result.error = "response is neither chunked nor HTTP/1.0"
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            writer.close()

    async def aclose(self) -> None:
        pass


async def _chunked_body(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The payloads of an HTTP/1.1 chunked body (uvicorn streams every SSE event as one)."""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
        if size == 0:
            return
        yield (await reader.readexactly(size + 2))[:-2]


async def _body_to_eof(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data


class HttpxClient:
    """httpx streaming, for a cross-check of the raw client against a real HTTP stack."""

    def __init__(self, base_url: str, max_streams: int, path: str = CHAT_PATH) -> None:
        limits = httpx.Limits(max_connections=max_streams, max_keepalive_connections=max_streams)
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120)
        self.path = path

    async def stream(self, body: bytes) -> StreamResult:
        result = StreamResult()
        sent = time.perf_counter()
        headers = {"Content-Type": "application/json"}
        try:
            async with self.client.stream("POST", self.path, content=body, headers=headers) as r:
                if r.status_code != 200:
                    await r.aread()
                    result.error = f"HTTP {r.status_code}: {r.text[:300]}"
                    return result
                await feed_sse(r.aiter_bytes(), result, sent)
        except httpx.HTTPError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        return result

    async def aclose(self) -> None:
        await self.client.aclose()


async def feed_sse(body: AsyncIterator[bytes], result: StreamResult, sent: float) -> None:
    """Parse every SSE ``data:`` line of a response body into ``result``."""
    buffer = b""
    async for data in body:
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data: ") and _on_event(line[6:], result, sent):
                return
    if result.error is None:
        result.error = "stream ended without [DONE]"


_decode_chunk = msgspec.json.Decoder().decode


def _on_event(payload: bytes, result: StreamResult, sent: float) -> bool:
    """Account one SSE event; True once the stream is over."""
    if payload == b"[DONE]":
        if result.error is None and result.completion_tokens == 0:
            result.error = "no usage chunk before [DONE]"
        return True
    chunk = _decode_chunk(payload)
    if "error" in chunk:
        error = chunk["error"]
        result.error = f"error event: {error.get('message') if isinstance(error, dict) else error}"
        return True
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            now = time.perf_counter()
            if result.first_content_at is None:
                result.first_content_at = now
                result.ttft_s = now - sent
            result.last_content_at = now
            result.content_chars += len(content)
            if result.text is not None:
                result.text.append(content)
    usage = chunk.get("usage")
    if usage:
        result.prompt_tokens = usage["prompt_tokens"]
        result.completion_tokens = usage["completion_tokens"]
        details = usage.get("prompt_tokens_details") or {}
        result.cached_tokens = details.get("cached_tokens") or 0
    return False


def stream_decode_tps(result: StreamResult) -> float | None:
    """Tokens after the first over first-to-last content chunk.

    Approximate: the first content chunk may hold more than one token (the
    detokenizer can hold the first token's text back until the next).
    """
    first, last = result.first_content_at, result.last_content_at
    if first is None or last is None or last <= first or result.completion_tokens < 2:
        return None
    return (result.completion_tokens - 1) / (last - first)


@dataclass
class Run:
    """One measured run of N concurrent streams (through a server), or of an
    in-process mlx-lm baseline (then only tokens, wall time and the timings it can see)."""

    tokens: int
    wall_s: float
    ttft_s: list[float] = field(default_factory=list)  # to the first non-empty text
    connect_s: list[float] = field(default_factory=list)  # until each TCP connection was up
    first_token_s: float | None = None  # in-process stream_generate only; a server hides it
    decode_tps: float | None = None  # 1 stream: first token to last, TTFT excluded
    errors: list[str] = field(default_factory=list)
    short: int = 0  # streams that ended before max_tokens (an EOS)
    prompt_tokens: list[int] = field(default_factory=list)  # distinct usage.prompt_tokens
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def tps(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0


async def run_streams(client: Client, body: bytes, streams: int, max_tokens: int) -> Run:
    """``streams`` concurrent copies of one streaming request, measured together."""
    started = time.perf_counter()
    results = await asyncio.gather(*(client.stream(body) for _ in range(streams)))
    wall = time.perf_counter() - started
    ok = [r for r in results if r.error is None]
    return Run(
        tokens=sum(r.completion_tokens for r in ok),
        wall_s=wall,
        ttft_s=[r.ttft_s for r in ok if r.ttft_s is not None],
        connect_s=[r.connect_s for r in results if r.connect_s is not None],
        decode_tps=stream_decode_tps(ok[0]) if streams == 1 and ok else None,
        errors=[r.error for r in results if r.error is not None],
        short=sum(r.completion_tokens < max_tokens for r in ok),
        prompt_tokens=sorted({r.prompt_tokens for r in ok}),
    )


def chat_body(model: str, messages: list[dict[str, str]], max_tokens: int) -> bytes:
    """A greedy streaming chat request that asks for the usage chunk."""
    return msgspec.json.encode(
        {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop (a gateway dependency) keeps the client's own per-chunk cost down.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# --- CPU time per process ---------------------------------------------------


CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) from /proc, or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _role(pid: int) -> str:
    """The stack's processes set their titles: 'mlx-gateway worker ...' etc."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "other"
    for role in ("worker", "gateway", "supervisor"):
        if cmdline.startswith(f"mlx-gateway {role}"):
            return role
    if "mlx_lm.server" in cmdline or "mlx_lm server" in cmdline:
        return "mlx_lm.server"
    return "honcho"


def descendants(root: int) -> dict[int, str]:
    """Every live process under ``root`` (inclusive), with its role."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.update(children)
        frontier.extend(children)
    return {pid: _role(pid) for pid in found}


class CpuMeter:
    """CPU seconds per role (the processes under ``roots``, and this client) over an interval."""

    def __init__(self, *roots: int) -> None:
        self.processes: dict[int, str] = {}
        if Path("/proc/self/stat").exists():
            for root in roots:
                self.processes.update(descendants(root))

    def snapshot(self) -> dict[str, float]:
        totals = {"client": time.process_time()}
        for pid, role in self.processes.items():
            stat = _stat(pid)
            if stat is not None:
                totals[role] = totals.get(role, 0.0) + stat[1]
        return totals

    @staticmethod
    def between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {role: after[role] - before.get(role, 0.0) for role in after}
