"""GET /v1/models and /health."""

from __future__ import annotations

import openai

from tests.e2e.conftest import BROKEN, LLAMA, QWEN, THINKING, VLM
from tests.e2e.harness import Stack


def test_models_lists_every_configured_model_with_family_and_state(
    client: openai.OpenAI,
) -> None:
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {LLAMA, QWEN, BROKEN, THINKING, VLM}
    assert models[VLM].model_dump()["family"] == "vlm"
    llama = models[LLAMA].model_dump()
    assert llama["object"] == "model"
    assert llama["family"] == "llm"
    assert llama["state"] == "ready"
    assert llama["aliases"] == ["demo"]
    assert llama["demo"] is True and "random-weight demo model" in llama["description"]
    assert models[BROKEN].model_dump()["state"] == "failed"


def test_model_by_alias(client: openai.OpenAI) -> None:
    assert client.models.retrieve("demo").id == LLAMA


def test_health_reports_each_worker(stack: Stack) -> None:
    health = stack.health()
    assert health["status"] == "degraded"  # the broken model
    assert health["models"][QWEN]["state"] == "ready"
    assert health["models"][QWEN]["pid"] > 0
    assert "does not exist" in health["models"][BROKEN]["error"]
