"""Operating it as a service, through a real stack with the official SDK: the
Phase-4 contract (X-House-ID, metadata ids, htdi, model metadata,
max_prompt_tokens), Prometheus metrics after real requests, JSON logs carrying
the ids in gateway and worker lines, the rate limit, and the public-bind guard."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import ROOT, Stack, free_port, running_stack, write_config

CHAT, EMBED = "demo-llama-tiny", "llama-embeddings"
MAX_PROMPT = 64
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(
    demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("service-stack")
    models: list[dict[str, Any]] = [
        {
            "name": CHAT,
            "family": "llm",
            "path": str(demo_models[CHAT]),
            "max_prompt_tokens": MAX_PROMPT,
        },
        {"name": EMBED, "family": "embeddings", "path": str(demo_models[CHAT])},
    ]
    with running_stack(models, tmp, gateway={"log_format": "json"}) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def htdi_of(obj: Any) -> dict[str, Any] | None:
    found: dict[str, Any] | None = obj.model_dump().get("htdi")
    return found


# --- the Phase-4 contract ---------------------------------------------------------


def test_chat_answers_carry_htdi_and_echo_the_house_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT,
        messages=HI,
        max_tokens=4,
        extra_headers={"X-Request-ID": "req-chat-1", "X-House-ID": "house-1"},
    )
    assert raw.headers["x-request-id"] == "req-chat-1"
    assert raw.headers["x-house-id"] == "house-1"
    htdi = htdi_of(raw.parse())
    assert htdi is not None and htdi["requestId"] == "req-chat-1"
    assert htdi["houseId"] == "house-1" and htdi["latencyMs"] > 0


def test_metadata_gives_the_ids_when_the_headers_do_not(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT,
        messages=HI,
        max_tokens=2,
        metadata={"requestId": "from-metadata", "houseId": "house-meta"},
    )
    assert raw.headers["x-request-id"] == "from-metadata"
    assert raw.headers["x-house-id"] == "house-meta"
    htdi = htdi_of(raw.parse())
    assert htdi is not None
    assert (htdi["requestId"], htdi["houseId"]) == ("from-metadata", "house-meta")


@pytest.mark.parametrize("include_usage", [False, True])
def test_only_the_final_streamed_chunk_carries_htdi(
    client: openai.OpenAI, include_usage: bool
) -> None:
    stream = client.chat.completions.create(
        model=CHAT,
        messages=HI,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": include_usage},
        extra_headers={"X-House-ID": "house-stream"},
    )
    chunks = list(stream)
    *before, last = chunks
    assert all(htdi_of(c) is None for c in before)
    htdi = htdi_of(last)
    assert htdi is not None and htdi["houseId"] == "house-stream" and htdi["requestId"]
    if include_usage:
        assert last.usage is not None and last.choices == []  # the usage chunk
    else:
        assert last.choices[0].finish_reason in ("stop", "length")


def test_completions_carry_htdi_unstreamed_and_on_the_last_chunk(client: openai.OpenAI) -> None:
    headers = {"X-Request-ID": "req-cmpl", "X-House-ID": "house-cmpl"}
    whole = client.completions.create(
        model=CHAT, prompt="Once upon", max_tokens=4, extra_headers=headers
    )
    htdi = htdi_of(whole)
    assert htdi is not None and htdi["requestId"] == "req-cmpl"
    chunks = list(
        client.completions.create(
            model=CHAT, prompt="Once upon", max_tokens=4, stream=True, extra_headers=headers
        )
    )
    assert [htdi_of(c) is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    last = htdi_of(chunks[-1])
    assert last is not None and last["houseId"] == "house-cmpl"


def test_embeddings_carry_htdi_and_take_metadata(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(
        model=EMBED,
        input=["a sentence"],
        extra_body={"metadata": {"requestId": "req-embed", "houseId": "house-embed"}},
    )
    assert len(reply.data[0].embedding) > 0
    htdi = htdi_of(reply)
    assert htdi is not None and (htdi["requestId"], htdi["houseId"]) == ("req-embed", "house-embed")


def test_models_carry_the_registrys_metadata(
    client: openai.OpenAI, demo_models: dict[str, Path]
) -> None:
    cards = {m.id: m.model_dump() for m in client.models.list()}
    chat = cards[CHAT]
    assert chat["family"] == "llm" and chat["path"] == str(demo_models[CHAT])
    assert chat["quantization"] is None  # the demo model is not quantized
    assert chat["context_length"] == 2048 and chat["max_prompt_tokens"] == MAX_PROMPT
    assert {"chat", "completions", "tools"} <= set(chat["capabilities"])
    assert cards[EMBED]["capabilities"] == ["embeddings"]


def test_a_prompt_over_max_prompt_tokens_is_a_400_with_the_counts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=CHAT, prompt=list(range(1, MAX_PROMPT + 2)), max_tokens=1)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "prompt_too_long"
    assert f"at most {MAX_PROMPT} tokens" in error["message"]
    assert f"has {MAX_PROMPT + 1} tokens" in error["message"]


# --- metrics --------------------------------------------------------------------


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, labels); fails unless every family parses."""
    text = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_per_model_histograms_move_after_a_real_request(
    stack: Stack, client: openai.OpenAI
) -> None:
    model = (("model_name", CHAT),)
    before = scrape(stack)
    # Long enough for several engine steps (20 ms each), so several deltas.
    reply = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=400, temperature=0)
    assert reply.usage is not None
    after = scrape(stack)

    def moved(name: str) -> float:
        return after[(name, model)] - before[(name, model)]

    assert moved("mlx_gateway:time_to_first_token_seconds_count") == 1
    assert moved("mlx_gateway:e2e_request_latency_seconds_count") == 1
    assert moved("mlx_gateway:request_queue_time_seconds_count") == 1
    assert moved("mlx_gateway:prompt_tokens_total") == reply.usage.prompt_tokens
    assert moved("mlx_gateway:generation_tokens_total") == reply.usage.completion_tokens
    if reply.usage.completion_tokens >= 200:  # unless an early end token came
        assert moved("mlx_gateway:inter_token_latency_seconds_count") >= 1
    assert after[("mlx_gateway:model_state", (*model, ("state", "ready")))] == 1
    assert after[("mlx_gateway:num_requests_running", model)] >= 0
    assert after[("mlx_gateway:model_loop_age_seconds", model)] < 5
    route = (("path", "/v1/chat/completions"), ("status", "200"))
    assert after[("mlx_gateway_requests_total", route)] >= 1


# --- JSON logs ----------------------------------------------------------------------


def json_log_lines(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    """(process, record) of every JSON line honcho collected."""
    found = []
    for line in stack.log.read_text(errors="replace").splitlines():
        name, _, rest = line.partition(" | ")
        if rest.startswith("{"):
            found.append((name.split()[-1], json.loads(rest)))
    return found


def test_json_log_lines_of_gateway_and_worker_carry_the_ids_and_the_model(
    stack: Stack, client: openai.OpenAI
) -> None:
    headers = {"X-Request-ID": "req-logged", "X-House-ID": "house-logged"}
    # A stream left after its first chunk: the worker logs the job's cancel.
    # Its end token is barred, so the random model cannot finish first.
    with client.chat.completions.create(
        model=CHAT,
        messages=HI,
        max_tokens=1500,
        stream=True,
        extra_headers=headers,
        logit_bias={"2": -100},  # demo-llama-tiny's EOS
    ) as stream:
        next(iter(stream))
    stack.wait_until(
        lambda h: any(
            r.get("event") == "cancelled" and r.get("request_id") == "req-logged"
            for _, r in json_log_lines(stack)
        ),
        timeout=30,
        what="the worker to log the cancel",
    )
    lines = json_log_lines(stack)
    assert lines and all({"request_id", "house_id", "model"} <= set(r) for _, r in lines)
    ours_all = [x for x in stack.log.read_text(errors="replace").splitlines() if " | " in x]
    not_json = [x for x in ours_all if "system" not in x.split(" | ")[0] and " | {" not in x]
    assert not_json == []  # every line of the gateway, supervisors and workers
    ours = [(p, r) for p, r in lines if r["request_id"] == "req-logged"]
    gateway = [r for p, r in ours if p.startswith("gateway")]
    worker = [r for p, r in ours if p.startswith(CHAT)]
    assert any(r["event"] == "request" for r in gateway)
    assert all((r["house_id"], r["model"]) == ("house-logged", CHAT) for r in gateway + worker)
    assert any(r["event"] == "cancelled" for r in worker)


# --- limits ---------------------------------------------------------------------


def test_over_the_rate_limit_is_a_429_with_retry_after(tmp_path: Path) -> None:
    models = [{"name": "never-loads", "family": "llm", "path": str(tmp_path / "nowhere")}]
    with running_stack(models, tmp_path, gateway={"rate_limit": "2/minute"}, ready=[]) as stack:
        stack.wait_until(lambda h: "never-loads" in h["models"], 30, "the gateway to answer")
        with stack.openai_client() as limited:
            assert [m.id for m in limited.models.list()] == ["never-loads"]
            limited.models.list()
            with pytest.raises(openai.RateLimitError) as caught:
                limited.models.list()
    response = caught.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) == 30
    assert caught.value.code == "rate_limit_exceeded"


def test_a_non_loopback_host_without_a_key_is_refused_at_startup(tmp_path: Path) -> None:
    config = tmp_path / "public.toml"
    write_config(config, free_port(), [])
    started = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "refusing to serve on '0.0.0.0' without an API key" in started.stderr
    assert "api_keys" in started.stderr and "allow_insecure_public" in started.stderr
