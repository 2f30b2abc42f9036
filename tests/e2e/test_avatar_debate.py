"""The Avatar Debate flow end to end: two personas on two language-model
workers and the Kokoro worker, through one gateway port, driven by the Python
example (the openai SDK) and by the web page in headless Chromium from another
origin (CORS)."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.avatar_debate import main as debate_main
from tests.e2e.harness import Stack, free_port, node_script, running_stack

LLAMA, QWEN, TTS = "demo-llama-tiny", "demo-qwen2-tiny", "demo-kokoro-tiny"
PAGE = Path(__file__).parents[2] / "examples" / "avatar-debate"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """examples/avatar-debate served by a static server of its own: another origin."""
    handler = functools.partial(_QuietHandler, directory=str(PAGE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(
    demo_models: dict[str, Path],
    demo_kokoro: Path,
    page_origin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    models: list[dict[str, Any]] = [
        {"name": LLAMA, "family": "llm", "path": str(demo_models[LLAMA]), "demo": True},
        {"name": QWEN, "family": "llm", "path": str(demo_models[QWEN]), "demo": True},
        {"name": TTS, "family": "kokoro", "path": str(demo_kokoro), "demo": True,
         "options": {"g2p": "espeak"}},
    ]  # fmt: skip
    # Only the page's origin may call from a browser (not "*").
    settings = {"cors_origins": [page_origin]}
    with running_stack(models, tmp_path_factory.mktemp("debate"), gateway=settings) as stack:
        yield stack


def test_the_python_example_debates_and_speaks_each_turn_with_visemes(
    stack: Stack, tmp_path: Path
) -> None:
    args = ["--base-url", f"{stack.base_url}/v1", "--turns", "3", "--out", str(tmp_path)]
    args += ["--max-tokens", "12", "--speak-words", "3"]
    assert debate_main(args) == 0
    turns = [json.loads((tmp_path / f"turn-{i}.json").read_text()) for i in (1, 2, 3)]
    assert [t["model"] for t in turns] == [LLAMA, QWEN, LLAMA]
    assert turns[0]["voice"] != turns[1]["voice"]  # one voice per persona
    for turn in turns:
        wav = tmp_path / f"turn-{turns.index(turn) + 1}.wav"
        assert wav.read_bytes()[:4] == b"RIFF"
        visemes = turn["visemes"]
        assert visemes and visemes[0]["start"] == 0
        assert all(
            a["end"] <= b["start"] + 1e-9 for a, b in zip(visemes, visemes[1:], strict=False)
        )
        assert abs(visemes[-1]["end"] - turn["duration"]) <= 0.05


def test_the_web_page_debates_from_another_origin_in_a_browser(
    stack: Stack, page_origin: str
) -> None:
    url = f"{page_origin}/index.html?base={stack.base_url}&turns=2&words=3"
    seen = node_script("browser_debate.mjs", url, timeout=300)
    debate = seen["debate"]
    assert debate["error"] is None, (debate["error"], seen["errors"])
    assert not seen["errors"]  # no CORS or script errors in the console
    turns = debate["turns"]
    assert [t["model"] for t in turns] == [LLAMA, QWEN]
    for turn in turns:
        assert turn["chunks"] >= 1  # the reply was streamed (SSE through fetch)
        assert turn["sampleRate"] == 24000 and turn["duration"] > 0
        assert turn["visemes"] >= 1 and abs(turn["lastVisemeEnd"] - turn["duration"]) <= 0.05
        assert turn["shown"]  # the mouth moved through the timeline


def test_a_page_from_an_origin_not_configured_gets_no_cors_grant(stack: Stack) -> None:
    import httpx

    preflight = {
        "Origin": "http://elsewhere.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization",
    }
    r = httpx.options(f"{stack.base_url}/v1/audio/speech", headers=preflight)
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
