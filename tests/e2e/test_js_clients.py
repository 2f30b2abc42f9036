"""The official OpenAI JS SDK (Node.js) against the running gateway."""

from __future__ import annotations

from tests.e2e.conftest import LLAMA
from tests.e2e.harness import Stack, node_script


def test_the_js_sdk_lists_streams_and_gets_openai_errors(stack: Stack) -> None:
    seen = node_script("openai_sdk.mjs", f"{stack.base_url}/v1", LLAMA)
    assert LLAMA in seen["models"]
    assert seen["chunks"] >= 2
    # Greedy: the streamed text is the non-streamed text.
    assert seen["streamed"] == seen["text"]
    assert seen["usage"]["completion_tokens"] >= 1
    assert seen["finish_reason"] in ("stop", "length")
    assert seen["notFound"] == {"status": 404, "name": "NotFoundError", "code": "model_not_found"}
