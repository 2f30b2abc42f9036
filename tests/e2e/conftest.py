from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.harness import Stack, free_port, write_config

LLAMA, QWEN, BROKEN = "demo-llama-tiny", "demo-qwen2-tiny", "broken-model"
VLM = "demo-qwen2-vl-tiny"
THINKING = "demo-llama-thinking"  # LLAMA's weights, with reasoning markers
THINK_MESSAGES = [{"role": "user", "content": "Think, then answer."}]
QWEN_MAX_PENDING = 3


@pytest.fixture(scope="session")
def thinking_markers(demo_models: dict[str, Path]) -> tuple[str, str, str]:
    """Reasoning markers taken from LLAMA's own greedy reply to THINK_MESSAGES
    (which the random model cannot be asked to write), and that reply."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(demo_models[LLAMA]))
    prompt = tokenizer.apply_chat_template(
        THINK_MESSAGES, add_generation_prompt=True, tokenize=False
    )
    tokens = tokenizer.encode(prompt, add_special_tokens=False)
    reply = generate(model, tokenizer, tokens, max_tokens=40)
    return reply[4:7], reply[12:14], reply


@pytest.fixture(scope="session")
def stack(
    demo_models: dict[str, Path],
    demo_vlm: Path,
    tmp_path_factory: pytest.TempPathFactory,
    thinking_markers: tuple[str, str, str],
) -> Iterator[Stack]:
    """The demo LLM workers (one with reasoning markers), the demo vision
    model, and one whose weights are missing, under honcho."""
    tmp = tmp_path_factory.mktemp("stack")
    config = tmp / "gateway.toml"
    port = free_port()
    write_config(
        config,
        port,
        [
            {
                "name": LLAMA,
                "family": "llm",
                "path": str(demo_models[LLAMA]),
                "aliases": ["demo"],
                "demo": True,
                # Long enough that a stream outlives the disconnect test's checks.
                "options": {"context_length": 100_000},
            },
            {
                "name": QWEN,
                "family": "llm",
                "path": str(demo_models[QWEN]),
                "demo": True,
                "max_pending": QWEN_MAX_PENDING,
                # The drain test's stream must finish, however loaded the machine.
                "drain_timeout": 120,
            },
            {"name": BROKEN, "family": "llm", "path": str(tmp / "no-such-model")},
            {
                "name": THINKING,
                "family": "llm",
                "path": str(demo_models[LLAMA]),
                "options": {"reasoning": list(thinking_markers[:2])},
            },
            {"name": VLM, "family": "vlm", "path": str(demo_vlm), "demo": True},
        ],
    )
    stack = Stack(config, port, tmp / "honcho.log")
    try:
        stack.wait_until(
            lambda h: (
                h["models"][LLAMA]["state"] == "ready"
                and h["models"][QWEN]["state"] == "ready"
                and h["models"][VLM]["state"] == "ready"
                and h["models"][BROKEN]["state"] == "failed"
            ),
            timeout=90,
            what="workers to start",
        )
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c
