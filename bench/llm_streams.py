"""Streaming LLM throughput: the gateway against mlx-lm called in-process.

``python bench/llm_streams.py [--model demo-llama-tiny] [--max-tokens 128]
[--streams 1,8,32] [--repeats 10] [--client raw|httpx] [--json out.json]``

For each stream count N, the same model, prompt and ``max_tokens``, greedy:

- in-process: N=1 runs ``mlx_lm.stream_generate`` (decode tok/s from the first
  token to the last, and time to first token); N>1 runs ``mlx_lm.batch_generate``
  on N copies of the prompt (aggregate tok/s over the whole call; no TTFT);
- gateway: a real stack (honcho, gateway, one supervised worker) and N
  concurrent streaming chat requests; aggregate tok/s is the sum of
  ``usage.completion_tokens`` over the wall time from the first request sent to
  the last stream done, TTFT is per request, to its first non-empty content.

In-process and gateway runs alternate, repeat after repeat, so load drifting on
a shared machine hits both sides alike; the table shows medians. The CPU time
of each process (stack and this client) is reported per generated token, so a
shortfall can be pinned on a process. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# First: exactly as the supervisor launches workers, OpenBLAS with one thread,
# loaded before anything imports mlx.core, so both sides run on the same BLAS.
from common import (
    CHAT_MESSAGES,
    OPENBLAS,
    ROOT,
    Client,
    CpuMeter,
    HttpxClient,
    RawClient,
    Run,
    Stack,
    chat_body,
    new_event_loop,
    percentile,
    run_streams,
    running_stack,
)
from mlx_lm.generate import batch_generate, stream_generate
from mlx_lm.utils import load as load_model

MESSAGES = CHAT_MESSAGES
# The targets: gateway tok/s over in-process tok/s.
TARGET_SINGLE = 0.95
TARGET_BATCH = 0.90


# --- results ----------------------------------------------------------------


@dataclass
class Row:
    streams: int
    target: float
    local: list[Run] = field(default_factory=list)
    gateway: list[Run] = field(default_factory=list)

    def local_tps(self) -> float:
        # 1 stream: tokens/s as mlx-lm reports it (generation_tps: first token to
        # last; time to first token is reported on its own), on both sides.
        runs = self.local
        if self.streams == 1:
            return statistics.median(r.decode_tps or 0.0 for r in runs)
        return statistics.median(r.tps for r in runs)

    def gateway_tps(self) -> float:
        if self.streams == 1:
            return statistics.median(r.decode_tps or 0.0 for r in self.gateway)
        return statistics.median(r.tps for r in self.gateway)

    def ratio(self) -> float:
        local = self.local_tps()
        return self.gateway_tps() / local if local else 0.0

    def ttfts(self) -> list[float]:
        return [t for r in self.gateway for t in r.ttft_s]

    def errors(self) -> int:
        return sum(len(r.errors) for r in self.gateway)

    def passed(self) -> bool:
        return self.ratio() >= self.target and self.errors() == 0

    def cpu(self) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds over wall seconds, and CPU microseconds per token."""
        out: dict[str, dict[str, float]] = {}
        for runs in (self.local, self.gateway):
            wall = sum(r.wall_s for r in runs)
            tokens = sum(r.tokens for r in runs)
            for name in runs[0].cpu_s if runs else ():
                seconds = sum(r.cpu_s.get(name, 0.0) for r in runs)
                out[name] = {
                    "share": seconds / wall if wall else 0.0,
                    "us_per_token": 1e6 * seconds / tokens if tokens else 0.0,
                }
        return out

    def summary(self) -> dict[str, Any]:
        ttfts = self.ttfts()
        local_ttft = [t for r in self.local for t in r.ttft_s]
        first_tokens = [r.first_token_s for r in self.local if r.first_token_s is not None]
        return {
            "streams": self.streams,
            "in_process_tps": self.local_tps(),
            "gateway_tps": self.gateway_tps(),
            "ratio": self.ratio(),
            "target": self.target,
            "passed": self.passed(),
            "gateway_ttft_mean_s": statistics.fmean(ttfts) if ttfts else None,
            "gateway_ttft_p50_s": percentile(ttfts, 50),
            "gateway_ttft_p95_s": percentile(ttfts, 95),
            "in_process_ttft_p50_s": percentile(local_ttft, 50),
            "in_process_first_token_p50_s": percentile(first_tokens, 50),
            # Over the whole call, TTFT included: how the gateway's 1-stream tok/s is taken.
            "in_process_end_to_end_tps": statistics.median(r.tps for r in self.local),
            "gateway_decode_tps": _median_or_none([r.decode_tps for r in self.gateway]),
            "gateway_end_to_end_tps": statistics.median(r.tps for r in self.gateway),
            "errors": self.errors(),
            "short_streams": sum(r.short for r in self.gateway),
            "in_process_short_streams": sum(r.short for r in self.local),
            "gateway_prompt_tokens": sorted({n for r in self.gateway for n in r.prompt_tokens}),
            "cpu": self.cpu(),
            "in_process_runs": [asdict(r) for r in self.local],
            "gateway_runs": [asdict(r) for r in self.gateway],
        }


def _median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# --- in-process baselines ---------------------------------------------------


def prompt_tokens(tokenizer: Any) -> list[int]:
    """The prompt exactly as the worker builds it from the same messages."""
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def run_stream_generate(model: Any, tokenizer: Any, prompt: list[int], max_tokens: int) -> Run:
    started = time.perf_counter()
    stamps: list[float] = []
    first_text: float | None = None
    for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
        stamps.append(time.perf_counter())
        if first_text is None and response.text:
            first_text = stamps[-1]
    first, last = stamps[0], stamps[-1]
    # n tokens stamped from the first to the last span n-1 decode steps.
    decode = (len(stamps) - 1) / (last - first) if len(stamps) > 1 else None
    return Run(
        tokens=len(stamps),
        wall_s=last - started,
        # The streaming detokenizer may hold the first token's text back, so the
        # first visible text (what the gateway's TTFT sees) can come a token later.
        ttft_s=[first_text - started] if first_text is not None else [],
        first_token_s=first - started,
        decode_tps=decode,
        short=int(len(stamps) < max_tokens),
    )


def run_batch_generate(
    model: Any, tokenizer: Any, prompt: list[int], streams: int, max_tokens: int
) -> Run:
    started = time.perf_counter()
    # Same batch limits as the worker's BatchGenerator (prefill 8, decode >= N).
    response = batch_generate(
        model,
        tokenizer,
        [prompt] * streams,
        max_tokens=max_tokens,
        completion_batch_size=max(32, streams),
        prefill_batch_size=8,
        return_token_ids=True,
    )
    wall = time.perf_counter() - started
    # generation_tokens counts every response, an EOS too, as the worker's usage
    # does; token_ids leave the EOS out, so a stream that hit one is shorter.
    ids = response.token_ids or []
    return Run(
        tokens=response.stats.generation_tokens,
        wall_s=wall,
        short=sum(len(seq) < max_tokens for seq in ids),
    )


def run_in_process(
    model: Any, tokenizer: Any, prompt: list[int], streams: int, max_tokens: int
) -> Run:
    if streams == 1:
        return run_stream_generate(model, tokenizer, prompt, max_tokens)
    return run_batch_generate(model, tokenizer, prompt, streams, max_tokens)


# --- through the gateway ----------------------------------------------------


def request_body(model: str, max_tokens: int) -> bytes:
    return chat_body(model, MESSAGES, max_tokens)


# --- the stack --------------------------------------------------------------


@contextlib.contextmanager
def gateway_stack(model: str, model_path: Path, max_batch: int, workdir: Path) -> Iterator[Stack]:
    """One supervised worker for ``model``, ready; always torn down."""
    entry = {
        "name": model,
        "family": "llm",
        "path": str(model_path),
        # Every stream decodes in one batch, as batch_generate's do.
        "options": {"max_batch_size": max_batch},
    }
    with running_stack([entry], workdir) as stack:
        yield stack


# --- the run ----------------------------------------------------------------


def measure(
    rows: list[Row],
    in_process: Callable[[int], Run],
    gateway: Callable[[int], Run],
    meter: CpuMeter,
    repeats: int,
) -> None:
    """Warm both sides up at each N, then alternate them ``repeats`` times."""
    for row in rows:
        in_process(row.streams)
        warm = gateway(row.streams)
        if warm.errors:
            print(
                f"  warm-up at {row.streams} streams: {len(warm.errors)} errors: {warm.errors[0]}"
            )
    for i in range(repeats):
        for row in rows:
            # Process-wide: counts MLX's own thread as well as the Python one.
            cpu_before = time.process_time()
            local = in_process(row.streams)
            local.cpu_s = {"in-process": time.process_time() - cpu_before}
            row.local.append(local)
            before = meter.snapshot()
            run = gateway(row.streams)
            run.cpu_s = CpuMeter.between(before, meter.snapshot())
            row.gateway.append(run)
        print(f"  repeat {i + 1}/{repeats} done")


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'streams':>7} | {'in-process tok/s':>16} | {'gateway tok/s':>13} | {'ratio':>5} | "
        f"{'target':>7} | {'gw TTFT p50/p95 ms':>18} | {'errors':>6} | result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        s = row.summary()
        p50, p95 = s["gateway_ttft_p50_s"], s["gateway_ttft_p95_s"]
        ttft = f"{p50 * 1e3:.1f}/{p95 * 1e3:.1f}" if p50 is not None else "n/a"
        print(
            f"{row.streams:>7} | {s['in_process_tps']:>16.0f} | {s['gateway_tps']:>13.0f} | "
            f"{s['ratio']:>5.2f} | {'>= ' + format(row.target, '.2f'):>7} | {ttft:>18} | "
            f"{s['errors']:>6} | {'PASS' if s['passed'] else 'FAIL'}"
        )


def print_details(rows: list[Row], max_tokens: int, prompt_len: int) -> None:
    """Where the time goes (CPU per process, the 1-stream latency split) and sanity checks."""
    print("\nCPU, as a share of one core and in microseconds per generated token:")
    for row in rows:
        s = row.summary()
        # honcho and the supervisors stay near zero: they are left to the JSON.
        cpu = ", ".join(
            f"{name} {s['cpu'][name]['share']:.0%} {s['cpu'][name]['us_per_token']:.0f}"
            for name in ("in-process", "worker", "gateway", "client")
            if name in s["cpu"]
        )
        print(f"  {row.streams:>3} streams: {cpu}")
    single = next((row.summary() for row in rows if row.streams == 1), None)
    if single is not None:
        print(
            "1 stream, in-process: first token"
            f" {single['in_process_first_token_p50_s'] * 1e3:.1f} ms, first text"
            f" {single['in_process_ttft_p50_s'] * 1e3:.1f} ms, end-to-end"
            f" {single['in_process_end_to_end_tps']:.0f} tok/s (TTFT included);"
            f" gateway end-to-end {single['gateway_end_to_end_tps']:.0f} tok/s (TTFT included)"
        )
    for row in rows:
        s = row.summary()
        if s["short_streams"] or s["in_process_short_streams"]:
            print(
                f"note: at {row.streams} streams, {s['short_streams']} gateway and"
                f" {s['in_process_short_streams']} in-process streams ended before"
                f" {max_tokens} tokens (an EOS): tok/s still counts real tokens"
            )
        if any(n != prompt_len for n in s["gateway_prompt_tokens"]):
            print(
                f"WARNING: gateway prompts had {s['gateway_prompt_tokens']} tokens,"
                f" in-process {prompt_len}: not the same work"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-llama-tiny", help="a folder under models/")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--streams", default="1,8,32", help="comma-separated stream counts")
    parser.add_argument("--repeats", type=int, default=10, help="measured runs per stream count")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: lean asyncio HTTP/1.1 (default); httpx: a full HTTP stack, costs more CPU",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def new_client(kind: str, stack: Stack, max_streams: int) -> Client:
    if kind == "httpx":
        return HttpxClient(stack.base_url, max_streams)
    return RawClient("127.0.0.1", stack.port)


def run_benchmark(args: argparse.Namespace, streams: list[int]) -> tuple[list[Row], int]:
    """Measure every stream count; returns the rows and the prompt's length."""
    model_path = ROOT / "models" / args.model
    if not model_path.is_dir():
        from demos.llm import ensure_demo_models

        ensure_demo_models(ROOT / "models")
    model, tokenizer = load_model(str(model_path))
    prompt = prompt_tokens(tokenizer)
    body = request_body(args.model, args.max_tokens)
    rows = [Row(n, TARGET_SINGLE if n == 1 else TARGET_BATCH) for n in streams]

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        gateway_stack(args.model, model_path, max(32, *streams), Path(tmp)) as stack,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        print(f"stack ready in {time.perf_counter() - started:.1f}s; measuring")
        client = new_client(args.client, stack, max(streams))
        try:
            measure(
                rows,
                lambda n: run_in_process(model, tokenizer, prompt, n, args.max_tokens),
                lambda n: runner.run(run_streams(client, body, n, args.max_tokens)),
                CpuMeter(stack.process.pid),
                args.repeats,
            )
        finally:
            runner.run(client.aclose())
    print(f"done in {time.perf_counter() - started:.0f}s")
    return rows, len(prompt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    streams = sorted({int(n) for n in args.streams.split(",")})
    print(
        f"model {args.model}, max_tokens {args.max_tokens}, streams {streams}, "
        f"repeats {args.repeats}, client {args.client}, OpenBLAS {OPENBLAS or 'not loaded'}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (ratios assume an otherwise idle box)")
    rows, prompt_len = run_benchmark(args, streams)
    print()
    print_table(rows)
    print_details(rows, args.max_tokens, prompt_len)
    if args.json:
        report = {
            "model": args.model,
            "max_tokens": args.max_tokens,
            "prompt_tokens": prompt_len,
            "repeats": args.repeats,
            "client": args.client,
            "openblas": OPENBLAS,
            "rows": [row.summary() for row in rows],
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(row.passed() for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
