"""Multi-turn chat through the gateway, with and without the prefix cache.

``python bench/llm_multiturn.py [--model demo-llama-tiny | --make-model] [--turns 10]
[--max-tokens 32] [--repeats 5] [--json out.json]``

One stack serves the same model folder under two names, one worker each: one
with the prefix cache (default options), one without (``prompt_cache_bytes =
0``). A conversation grows turn by turn (system prompt, then each turn appends a
user message and the assistant's greedy reply) and every turn is one streaming
chat request. The two workers get the same conversation, turn by turn, in
alternating order; each repeat is a fresh conversation whose system prompt
starts with a different word, so nothing cached by an earlier repeat helps.

Per turn: time to first token (to the first non-empty content chunk),
``usage.prompt_tokens`` and ``usage.prompt_tokens_details.cached_tokens``. The
issue's target: with the cache, turn-10 TTFT <= 1.5x turn-1 TTFT. Exit status 1
if it is missed.

``--make-model`` creates (once) ``models/bench-llama-20m``, a random-weight llama
of ~20M parameters with the demo tokenizer, and runs on it: on the 0.5M-parameter
demo model prefill is so cheap that the cache has little to save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# First: sets the BLAS environment and preloads OpenBLAS before anything imports mlx.
from common import (
    OPENBLAS,
    ROOT,
    RawClient,
    StreamResult,
    chat_body,
    exit_on_sigterm,
    model_folder,
    ms,
    new_event_loop,
    percentile,
    running_stack,
)

TARGET = 1.5  # with the cache, TTFT at the last turn <= TARGET x TTFT at turn 1
BENCH_MODEL = "bench-llama-20m"
WARMUP_TURNS = 2  # of a conversation on each worker before measuring (not recorded)
VARIANTS = ("with", "without")

SYSTEM = (
    "{word} is the code word of this conversation. You are a helpful assistant who "
    "answers questions about the town by the river and the people who work there."
)
# The seed word comes first, so conversations of different repeats share only the
# few tokens before it.
SEED_WORDS = ("amber", "birch", "cobalt", "delta", "ember", "falcon", "granite", "harbor")
USER_MESSAGES = (
    "Tell me about the morning by the river. What did the boats look like, what could you "
    "hear from the hill, and what did the baker do before the market opened in the square?",
    "Why did Anna like to walk to work along the water every day, and what was she thinking "
    "about on this particular morning before the noise of the office began?",
    "Her brother wrote to her from the coast. What did he ask her, and why was she not sure "
    "that she could take the time to visit him in the summer?",
    "Describe the first meeting at the office. How many people sat around the table, what "
    "questions were written on the board, and how long did it take them to agree on a plan?",
    "Paul had been with the company for twelve years. What did he say about measuring before "
    "changing anything, and why did the others agree with him so quickly?",
    "How would you collect numbers for a week about how fast a service answers a request, "
    "and what would you write down so that the team could decide what to build first?",
    "What should happen when the network is slow or when a server goes down in the middle of "
    "the night? Give a short plan that a small team could follow without panic.",
    "In the afternoon it began to rain and the streets emptied. What did the market traders "
    "do with their stalls, and where did the people from the square go to stay dry?",
    "If Anna decided to visit her brother on the coast in the summer, how should she plan the "
    "trip, and what would she need to finish at the office before she left?",
    "Looking back over the whole day, what was the most important decision the team made, "
    "and what would you tell them to measure again next week to know it was right?",
)


# --- the benchmark model ------------------------------------------------------


def make_bench_model(name: str = BENCH_MODEL) -> Path:
    """``models/<name>``: a ~20M-parameter random llama with the demo tokenizer, made once.

    The demo llama's config and tokenizer files are copied; the shape is made
    bigger and the weights are drawn by the real mlx-lm model class, as
    demos/llm.py does. Written to a staging folder renamed into place.
    """
    final = ROOT / "models" / name
    if (final / "model.safetensors").exists():
        return final
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    source = model_folder("demo-llama-tiny")
    config = json.loads((source / "config.json").read_text())
    config.pop("mlx_gateway_demo", None)  # not one of demos/llm.py's folders
    config.update(
        hidden_size=512,
        num_hidden_layers=6,
        intermediate_size=1536,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        mlx_gateway_bench=True,
    )
    staging = final.with_name(f".{name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for file in source.iterdir():
            if file.name.startswith(("tokenizer", "special_tokens", "generation_config")):
                shutil.copy(file, staging / file.name)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        mx.random.seed(20)
        model = llama.Model(llama.ModelArgs.from_dict(config))
        weights = dict(tree_flatten(model.parameters()))
        mx.eval(weights)
        mx.save_safetensors(str(staging / "model.safetensors"), weights)
        params = sum(w.size for w in weights.values())
        (staging / "README.md").write_text(
            f"# {name}\n\nRandom-weight llama ({params:,} parameters, float32, seed 20) with the "
            "demo tokenizer, made offline by bench/llm_multiturn.py --make-model so that "
            "prefill has a visible cost. Its output is gibberish.\n"
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"created {final} ({params / 1e6:.1f}M parameters)")
    return final


def parameter_count(path: Path) -> int:
    """Parameters in a folder's safetensors files, from their headers only."""
    total = 0
    for file in path.glob("*.safetensors"):
        with file.open("rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for key, info in header.items():
            if key != "__metadata__":
                total += math.prod(info["shape"])
    return total


# --- results ----------------------------------------------------------------


@dataclass
class TurnStats:
    ttft_s: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, result: StreamResult) -> None:
        if result.error is not None:
            self.errors.append(result.error)
            return
        if result.ttft_s is not None:
            self.ttft_s.append(result.ttft_s)
        self.prompt_tokens.append(result.prompt_tokens)
        self.cached_tokens.append(result.cached_tokens)
        self.completion_tokens.append(result.completion_tokens)

    def ttft(self) -> float | None:
        return percentile(self.ttft_s, 50)

    def median(self, name: str) -> float:
        values = getattr(self, name)
        return statistics.median(values) if values else 0.0


@dataclass
class Results:
    turns: int
    stats: dict[str, list[TurnStats]] = field(init=False)
    replies: dict[str, list[list[str]]] = field(init=False)  # per variant, per repeat

    def __post_init__(self) -> None:
        self.stats = {v: [TurnStats() for _ in range(self.turns)] for v in VARIANTS}
        self.replies = {v: [] for v in VARIANTS}

    def growth(self, variant: str) -> float | None:
        """TTFT p50 at the last turn over TTFT p50 at turn 1."""
        first, last = self.stats[variant][0].ttft(), self.stats[variant][-1].ttft()
        return last / first if first and last else None

    def passed(self) -> bool:
        growth = self.growth("with")
        return growth is not None and growth <= TARGET and self.errors() == 0

    def errors(self) -> int:
        return sum(len(t.errors) for v in VARIANTS for t in self.stats[v])

    def identical_replies(self) -> tuple[int, int]:
        """(conversations whose replies matched with and without the cache, conversations)."""
        pairs = list(zip(self.replies["with"], self.replies["without"], strict=True))
        return sum(a == b for a, b in pairs), len(pairs)

    def summary(self) -> dict[str, Any]:
        rows = []
        for i in range(self.turns):
            w, wo = self.stats["with"][i], self.stats["without"][i]
            rows.append(
                {
                    "turn": i + 1,
                    "prompt_tokens_p50": w.median("prompt_tokens"),
                    "cached_tokens_p50": w.median("cached_tokens"),
                    "ttft_with_p50_s": w.ttft(),
                    "ttft_without_p50_s": wo.ttft(),
                    "with": w.__dict__,
                    "without": wo.__dict__,
                }
            )
        same, total = self.identical_replies()
        return {
            "growth_with": self.growth("with"),
            "growth_without": self.growth("without"),
            "target": TARGET,
            "passed": self.passed(),
            "errors": self.errors(),
            "identical_conversations": same,
            "conversations": total,
            "turns": rows,
        }


# --- the run ----------------------------------------------------------------


@dataclass
class Conversation:
    model: str
    messages: list[dict[str, str]]
    replies: list[str] = field(default_factory=list)

    def body(self, user: str, max_tokens: int) -> bytes:
        return chat_body(
            self.model, [*self.messages, {"role": "user", "content": user}], max_tokens
        )

    def append(self, user: str, result: StreamResult) -> None:
        reply = "".join(result.text or ())
        self.replies.append(reply)
        self.messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ]


def run_conversations(
    runner: asyncio.Runner,
    client: RawClient,
    names: dict[str, str],
    word: str,
    turns: int,
    max_tokens: int,
    results: Results | None,
    flip: bool,
) -> None:
    """One conversation per variant, advanced turn by turn, the two alternating first."""
    system = {"role": "system", "content": SYSTEM.format(word=word.capitalize())}
    conversations = {v: Conversation(names[v], [system]) for v in VARIANTS}
    for turn in range(turns):
        user = USER_MESSAGES[turn % len(USER_MESSAGES)]
        order = VARIANTS if (turn % 2 == 0) != flip else VARIANTS[::-1]
        for variant in order:
            conversation = conversations[variant]
            result = runner.run(client.stream(conversation.body(user, max_tokens)))
            conversation.append(user, result)
            if results is not None:
                results.stats[variant][turn].add(result)
            elif result.error is not None:
                print(f"  warm-up error ({variant} cache, turn {turn + 1}): {result.error}")
    if results is not None:
        for variant in VARIANTS:
            results.replies[variant].append(conversations[variant].replies)


def run_benchmark(args: argparse.Namespace, model_path: Path) -> Results:
    names = {"with": f"{args.model}-cache", "without": f"{args.model}-nocache"}
    entries = [
        {"name": names["with"], "family": "llm", "path": str(model_path)},
        {
            "name": names["without"],
            "family": "llm",
            "path": str(model_path),
            "options": {"prompt_cache_bytes": 0},
        },
    ]
    results = Results(args.turns)
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_stack(entries, Path(tmp)) as stack,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        print(f"stack ready in {time.perf_counter() - started:.1f}s; measuring")
        client = RawClient("127.0.0.1", stack.port, keep_text=True)
        run_conversations(
            runner, client, names, "warmup", WARMUP_TURNS, args.max_tokens, None, False
        )
        for repeat in range(args.repeats):
            word = SEED_WORDS[repeat % len(SEED_WORDS)]
            if repeat >= len(SEED_WORDS):
                word += str(repeat)
            run_conversations(
                runner, client, names, word, args.turns, args.max_tokens, results, repeat % 2 == 1
            )
            print(f"  repeat {repeat + 1}/{args.repeats} done")
    print(f"done in {time.perf_counter() - started:.0f}s")
    return results


def print_table(results: Results) -> None:
    header = (
        f"{'turn':>4} | {'prompt tokens':>13} | {'cached (with cache)':>19} | "
        f"{'TTFT with cache p50 ms':>22} | {'TTFT without cache p50 ms':>25} | "
        f"{'ratio without/with':>18}"
    )
    print(header)
    print("-" * len(header))
    for i in range(results.turns):
        w, wo = results.stats["with"][i], results.stats["without"][i]
        with_ttft, without_ttft = w.ttft(), wo.ttft()
        ratio = f"{without_ttft / with_ttft:.2f}" if with_ttft and without_ttft else "n/a"
        print(
            f"{i + 1:>4} | {w.median('prompt_tokens'):>13.0f} | "
            f"{w.median('cached_tokens'):>19.0f} | {ms(with_ttft):>22} | "
            f"{ms(without_ttft):>25} | {ratio:>18}"
        )
    growth, growth_without = results.growth("with"), results.growth("without")
    last = results.turns
    print(
        f"\ntarget: with the cache, turn-{last} TTFT <= {TARGET}x turn-1 TTFT: "
        + (f"{growth:.2f}x" if growth is not None else "n/a")
        + f" -> {'PASS' if results.passed() else 'FAIL'}"
        + (f"  (without the cache: {growth_without:.2f}x)" if growth_without else "")
    )


def print_details(results: Results) -> None:
    stale = sorted({n for t in results.stats["without"] for n in t.cached_tokens if n})
    if stale:
        print(f"WARNING: the model without the cache reported cached tokens: {stale}")
    same, total = results.identical_replies()
    print(f"replies identical with and without the cache in {same} of {total} conversations")
    for variant in VARIANTS:
        for i, turn in enumerate(results.stats[variant]):
            if turn.errors:
                print(f"{variant} cache, turn {i + 1}: {len(turn.errors)} errors: {turn.errors[0]}")
    prompts = [
        abs(a - b)
        for w, wo in zip(results.stats["with"], results.stats["without"], strict=True)
        for a, b in zip(w.prompt_tokens, wo.prompt_tokens, strict=False)
    ]
    if any(prompts):
        print(f"prompt lengths with/without the cache differ by up to {max(prompts)} tokens")
    completions = {n for v in VARIANTS for t in results.stats[v] for n in t.completion_tokens}
    print(f"completion tokens per turn: {sorted(completions)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a folder under models/ (demo-llama-tiny)")
    parser.add_argument(
        "--make-model",
        action="store_true",
        help=f"create models/{BENCH_MODEL} (~20M random parameters) if missing and use it",
    )
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="conversations per variant")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = BENCH_MODEL if args.make_model else "demo-llama-tiny"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    if args.make_model:
        make_bench_model()
    model_path = model_folder(args.model)
    print(
        f"model {args.model} ({parameter_count(model_path) / 1e6:.1f}M parameters), "
        f"{args.turns} turns, max_tokens {args.max_tokens}, repeats {args.repeats}, "
        f"OpenBLAS {OPENBLAS or 'not loaded'}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (ratios assume an otherwise idle box)")
    results = run_benchmark(args, model_path)
    print()
    print_table(results)
    print_details(results)
    if args.json:
        report = {
            "model": args.model,
            "turns": args.turns,
            "max_tokens": args.max_tokens,
            "repeats": args.repeats,
            "openblas": OPENBLAS,
            **results.summary(),
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if results.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
