"""Streaming LLM throughput: the gateway against ``mlx_lm.server``.

``python bench/llm_vs_mlx_server.py [--model demo-llama-tiny] [--max-tokens 128]
[--streams 1,8,32] [--repeats 10] [--json out.json]``

Both servers run the same model folder, and get the same N concurrent streaming
chat requests (greedy, same prompt, same ``max_tokens``):

- the gateway: a real stack (honcho, gateway, one supervised worker);
- ``python -m mlx_lm.server --model <folder> --host 127.0.0.1 --port <free>``,
  started by this script with OpenBLAS preloaded and one BLAS thread, as the
  workers get it. It serves the model under the path it was given, so that path
  is the requests' ``model``.

Per server and N: aggregate tok/s (the sum of ``usage.completion_tokens`` of the
streams that completed over the wall time from the first request sent to the
last stream done; median over repeats), TTFT p50/p95 (to the first non-empty
content chunk, over every request) and errors (connection errors, non-200
responses, error events, streams without a usage chunk or ``[DONE]``). The two
servers alternate, repeat after repeat. Targets from the issue: the gateway's
8-stream aggregate >= 2.5x mlx_lm.server's, and 32 streams with zero errors on
the gateway. Exit status 1 if one is missed. Both servers are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# First: sets the BLAS environment and preloads OpenBLAS (for this process too).
from common import (
    CHAT_MESSAGES,
    OPENBLAS,
    CpuMeter,
    RawClient,
    Run,
    chat_body,
    exit_on_sigterm,
    free_port,
    model_folder,
    ms,
    new_event_loop,
    percentile,
    run_streams,
    running_stack,
)

from workers.blas import openblas_path

SERVERS = ("gateway", "mlx_lm.server")
TARGET_RATIO_8 = 2.5  # gateway 8-stream tok/s over mlx_lm.server's
SLOW_CONNECT_S = 0.5
# Roles of the CPU meter that belong to each server.
ROLES = {
    "gateway": ("worker", "gateway", "supervisor", "honcho"),
    "mlx_lm.server": ("mlx_lm.server",),
}


# --- results ----------------------------------------------------------------


@dataclass
class Row:
    streams: int
    runs: dict[str, list[Run]] = field(default_factory=lambda: {s: [] for s in SERVERS})

    def tps(self, server: str) -> float:
        return statistics.median(r.tps for r in self.runs[server])

    def ratio(self) -> float:
        baseline = self.tps("mlx_lm.server")
        return self.tps("gateway") / baseline if baseline else float("inf")

    def ttfts(self, server: str) -> list[float]:
        return [t for r in self.runs[server] for t in r.ttft_s]

    def connects(self, server: str) -> list[float]:
        return [t for r in self.runs[server] for t in r.connect_s]

    def slow_connects(self, server: str) -> int:
        """Connections that waited for a SYN retransmission (1 s on Linux): a full backlog."""
        return sum(t >= SLOW_CONNECT_S for t in self.connects(server))

    def errors(self, server: str) -> list[str]:
        return [e for r in self.runs[server] for e in r.errors]

    def requests(self, server: str) -> int:
        return self.streams * len(self.runs[server])

    def cpu(self, server: str) -> dict[str, float]:
        """CPU microseconds per generated token of the server's processes and of the client."""
        runs = self.runs[server]
        tokens = sum(r.tokens for r in runs)
        own = sum(r.cpu_s.get(role, 0.0) for r in runs for role in ROLES[server])
        client = sum(r.cpu_s.get("client", 0.0) for r in runs)
        wall = sum(r.wall_s for r in runs)
        return {
            "server_share": own / wall if wall else 0.0,
            "server_us_per_token": 1e6 * own / tokens if tokens else 0.0,
            "client_us_per_token": 1e6 * client / tokens if tokens else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"streams": self.streams, "ratio": self.ratio()}
        for server in SERVERS:
            ttfts = self.ttfts(server)
            out[server] = {
                "tps": self.tps(server),
                "ttft_p50_s": percentile(ttfts, 50),
                "ttft_p95_s": percentile(ttfts, 95),
                "requests": self.requests(server),
                "connect_p50_s": percentile(self.connects(server), 50),
                "connect_max_s": max(self.connects(server), default=None),
                "slow_connects": self.slow_connects(server),
                "errors": len(self.errors(server)),
                "error_kinds": dict(Counter(error_kind(e) for e in self.errors(server))),
                "short_streams": sum(r.short for r in self.runs[server]),
                "prompt_tokens": sorted({n for r in self.runs[server] for n in r.prompt_tokens}),
                "cpu": self.cpu(server),
                "runs": [asdict(r) for r in self.runs[server]],
            }
        return out


def error_kind(error: str) -> str:
    if error.startswith("connect:") or "Connection" in error or "Errno" in error:
        return "connection"
    if error.startswith("HTTP "):
        return "non-200"
    if "[DONE]" in error:
        return "missing [DONE]"
    if "usage" in error:
        return "no usage"
    if error.startswith("error event"):
        return "error event"
    return "other"


# --- the two servers --------------------------------------------------------


@contextlib.contextmanager
def mlx_lm_server(
    model_path: Path, workdir: Path, timeout: float = 120
) -> Iterator[tuple[Any, int]]:
    """``python -m mlx_lm.server`` on a free port, ready; always stopped."""
    port = free_port()
    hub = workdir / "hf" / "hub"
    hub.mkdir(parents=True)  # its /v1/models scans the hub cache, and fails if there is none
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_HOME=str(hub.parent),
        HF_HUB_CACHE=str(hub),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    if blas := openblas_path():
        env["LD_PRELOAD"] = ":".join(p for p in (blas, env.get("LD_PRELOAD", "")) if p)
    log_path = workdir / "mlx_lm.server.log"
    command = [sys.executable, "-m", "mlx_lm.server", "--model", str(model_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlx_lm.server exited; log:\n{log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlx_lm.server not up; log:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def served_models(port: int) -> list[str]:
    response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10)
    response.raise_for_status()
    return [m["id"] for m in response.json()["data"]]


# --- the run ----------------------------------------------------------------


def measure(
    rows: list[Row], run: dict[str, Callable[[int], Run]], meter: CpuMeter, repeats: int
) -> None:
    """Warm both servers up at each N, then alternate them ``repeats`` times."""
    for row in rows:
        for server in SERVERS:
            warm = run[server](row.streams)
            if warm.errors:
                print(
                    f"  warm-up, {server} at {row.streams} streams: {len(warm.errors)} errors:"
                    f" {warm.errors[0]}"
                )
    for i in range(repeats):
        for row in rows:
            # Alternate which server goes first, so neither always follows the other.
            for server in SERVERS if i % 2 == 0 else SERVERS[::-1]:
                before = meter.snapshot()
                result = run[server](row.streams)
                result.cpu_s = CpuMeter.between(before, meter.snapshot())
                row.runs[server].append(result)
        print(f"  repeat {i + 1}/{repeats} done")


def passed(rows: list[Row]) -> dict[str, bool]:
    checks = {}
    for row in rows:
        if row.streams == 8:
            checks[f"8 streams: gateway >= {TARGET_RATIO_8}x mlx_lm.server"] = (
                row.ratio() >= TARGET_RATIO_8
            )
        if row.streams == 32:
            checks["32 streams: zero gateway errors"] = not row.errors("gateway")
    return checks


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'streams':>7} | {'gateway tok/s':>13} | {'mlx_lm.server tok/s':>19} | {'ratio':>5} | "
        f"{'gw TTFT p50/p95 ms':>18} | {'mlx TTFT p50/p95 ms':>19} | {'gw errors':>9} | "
        f"{'mlx errors':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ttft = {}
        for server in SERVERS:
            values = row.ttfts(server)
            ttft[server] = f"{ms(percentile(values, 50))}/{ms(percentile(values, 95))}"
        errors = {s: f"{len(row.errors(s))}/{row.requests(s)}" for s in SERVERS}
        print(
            f"{row.streams:>7} | {row.tps('gateway'):>13.0f} | {row.tps('mlx_lm.server'):>19.0f} | "
            f"{row.ratio():>5.2f} | {ttft['gateway']:>18} | {ttft['mlx_lm.server']:>19} | "
            f"{errors['gateway']:>9} | {errors['mlx_lm.server']:>10}"
        )
    print()
    for name, ok in passed(rows).items():
        print(f"target: {name}: {'PASS' if ok else 'FAIL'}")


def print_details(rows: list[Row], max_tokens: int) -> None:
    print("\nratios, gateway / mlx_lm.server:")
    for row in rows:
        p50 = {s: percentile(row.ttfts(s), 50) for s in SERVERS}
        ttft = f"{p50['gateway'] / p50['mlx_lm.server']:.2f}" if all(p50.values()) else "n/a"
        print(f"  {row.streams:>3} streams: tok/s {row.ratio():.2f}, TTFT p50 {ttft}")
    print(f"TCP connect: p50 / max, and connections that waited >= {SLOW_CONNECT_S} s:")
    for row in rows:
        parts = []
        for server in SERVERS:
            connects = row.connects(server)
            parts.append(
                f"{server} {ms(percentile(connects, 50))} / {ms(max(connects, default=None))} ms,"
                f" {row.slow_connects(server)}/{row.requests(server)} slow"
            )
        print(f"  {row.streams:>3} streams: " + ", ".join(parts))
    for row in rows:
        clean = [
            r.tps for r in row.runs["mlx_lm.server"] if max(r.connect_s, default=0) < SLOW_CONNECT_S
        ]
        stalled = len(row.runs["mlx_lm.server"]) - len(clean)
        if stalled and clean:
            print(
                f"  {row.streams:>3} streams: mlx_lm.server runs without a slow connection:"
                f" {len(clean)}, median {statistics.median(clean):.0f} tok/s"
                f" (gateway / that: {row.tps('gateway') / statistics.median(clean):.2f})"
            )
        elif stalled:
            print(f"  {row.streams:>3} streams: every mlx_lm.server run had a slow connection")
    print("CPU, microseconds per generated token (server processes / this client):")
    for row in rows:
        parts = []
        for server in SERVERS:
            cpu = row.cpu(server)
            parts.append(
                f"{server} {cpu['server_us_per_token']:.0f} ({cpu['server_share']:.0%} of a core)"
                f" / {cpu['client_us_per_token']:.0f}"
            )
        print(f"  {row.streams:>3} streams: " + ", ".join(parts))
    for row in rows:
        for server in SERVERS:
            errors = row.errors(server)
            if errors:
                kinds = Counter(error_kind(e) for e in errors)
                print(
                    f"{server}, {row.streams} streams: {len(errors)} errors {dict(kinds)};"
                    f" e.g. {errors[0]!r}"
                )
            short = sum(r.short for r in row.runs[server])
            if short:
                print(
                    f"note: {server}, {row.streams} streams: {short} streams ended before"
                    f" {max_tokens} tokens (an EOS); tok/s counts real tokens"
                )
    prompts = {
        s: {n for row in rows for r in row.runs[s] for n in r.prompt_tokens} for s in SERVERS
    }
    if prompts["gateway"] != prompts["mlx_lm.server"]:
        print(f"WARNING: prompt tokens differ: {prompts}: not the same work")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-llama-tiny", help="a folder under models/")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--streams", default="1,8,32", help="comma-separated stream counts")
    parser.add_argument("--repeats", type=int, default=10, help="measured runs per stream count")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace, streams: list[int]) -> list[Row]:
    model_path = model_folder(args.model)
    rows = [Row(n) for n in streams]
    entry = {
        "name": args.model,
        "family": "llm",
        "path": str(model_path),
        "options": {"max_batch_size": max(32, *streams)},
    }
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_stack([entry], Path(tmp)) as stack,
        mlx_lm_server(model_path, Path(tmp)) as (server, port),
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        print(f"both servers ready in {time.perf_counter() - started:.1f}s")
        print(f"mlx_lm.server /v1/models: {served_models(port)}")
        clients = {
            "gateway": (RawClient("127.0.0.1", stack.port), args.model),
            # It serves the model under the path it was started with.
            "mlx_lm.server": (RawClient("127.0.0.1", port), str(model_path)),
        }

        def runner_for(client: RawClient, body: bytes) -> Callable[[int], Run]:
            return lambda n: runner.run(run_streams(client, body, n, args.max_tokens))

        run = {
            name: runner_for(client, chat_body(model, CHAT_MESSAGES, args.max_tokens))
            for name, (client, model) in clients.items()
        }
        measure(rows, run, CpuMeter(stack.process.pid, server.pid), args.repeats)
    print(f"done in {time.perf_counter() - started:.0f}s")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    streams = sorted({int(n) for n in args.streams.split(",")})
    print(
        f"model {args.model}, max_tokens {args.max_tokens}, streams {streams}, "
        f"repeats {args.repeats}, OpenBLAS {OPENBLAS or 'not loaded'}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (ratios assume an otherwise idle box)")
    rows = run_benchmark(args, streams)
    print()
    print_table(rows)
    print_details(rows, args.max_tokens)
    checks = passed(rows)
    if args.json:
        report = {
            "model": args.model,
            "max_tokens": args.max_tokens,
            "repeats": args.repeats,
            "openblas": OPENBLAS,
            "targets": checks,
            "rows": [row.summary() for row in rows],
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
