"""The official OpenAI JS SDK (Node.js) against the running gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import LLAMA
from tests.e2e.harness import Stack

JS = Path(__file__).parents[1] / "js"


def node_script(script: str, *args: str, timeout: float = 120) -> dict:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "openai").is_dir():
        # scripts/setup.sh installs tests/js's packages wherever Node.js exists.
        pytest.fail("Node.js and tests/js/node_modules are needed (run scripts/setup.sh)")
    done = subprocess.run(
        [node, str(JS / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_js_sdk_lists_streams_and_gets_openai_errors(stack: Stack) -> None:
    seen = node_script("openai_sdk.mjs", f"{stack.base_url}/v1", LLAMA)
    assert LLAMA in seen["models"]
    assert seen["chunks"] >= 2
    # Greedy: the streamed text is the non-streamed text.
    assert seen["streamed"] == seen["text"]
    assert seen["usage"]["completion_tokens"] >= 1
    assert seen["finish_reason"] in ("stop", "length")
    assert seen["notFound"] == {"status": 404, "name": "NotFoundError", "code": "model_not_found"}
