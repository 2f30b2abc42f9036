"""Bad input gets an OpenAI error envelope with the right status."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import BROKEN, LLAMA, QWEN, QWEN_MAX_PENDING
from tests.e2e.harness import Stack


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    assert "gpt-17" in err.value.message


def test_worker_that_failed_to_load_is_503_naming_the_cause(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=BROKEN, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert BROKEN in err.value.message
    assert "does not exist" in err.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": LLAMA, "messages": [], "max_tokens": 4}, "messages"),
        (
            {"model": LLAMA, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
        ({"model": LLAMA, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": LLAMA, "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        (
            {"model": LLAMA, "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
            "top_logprobs",
        ),
        (
            {
                "model": LLAMA,
                "messages": [{"role": "user", "content": "x"}],
                "logit_bias": {"a": 1},
            },
            "logit_bias",
        ),
        (
            {
                "model": LLAMA,
                "messages": [{"role": "user", "content": "x"}],
                "logit_bias": {"99999": 1},
            },
            "logit_bias",
        ),
    ],
)
def test_invalid_request_is_400_naming_the_field(
    stack: Stack, body: dict[str, object], param: str
) -> None:
    r = httpx.post(f"{stack.base_url}/v1/chat/completions", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_malformed_json_is_400(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_unknown_route_is_404_envelope(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_request_id_is_echoed_or_generated(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v1/models", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = httpx.get(f"{stack.base_url}/v1/models").headers["x-request-id"]
    assert len(generated) >= 16


def test_cors_preflight_is_answered(stack: Stack) -> None:
    r = httpx.options(
        f"{stack.base_url}/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")


def test_full_queue_is_429_with_retry_after(client: openai.OpenAI, stack: Stack) -> None:
    streams = [
        client.chat.completions.create(
            model=QWEN,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=1000,
            temperature=0,  # sampling could draw EOS and end a stream early
            stream=True,
        )
        for _ in range(QWEN_MAX_PENDING)
    ]
    try:
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(
                model=QWEN, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert err.value.status_code == 429
        assert err.value.code == "queue_full"
        assert err.value.response.headers["retry-after"] == "1"
    finally:
        for stream in streams:
            stream.close()
        # The gateway frees a slot when it sees the disconnect, a moment later:
        # the next test must not find the queue still full.
        stack.wait_until(
            lambda h: h["models"][QWEN]["in_flight"] == 0, 10, "the closed streams to leave"
        )


def test_prompt_over_the_context_is_400_with_the_token_counts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=QWEN, prompt=[5] * 3000, max_tokens=4)
    assert err.value.code == "context_length_exceeded"
    assert "2048" in err.value.message and "3000" in err.value.message


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_deeply_nested_json_is_400_and_the_connection_is_kept(stack: Stack, path: str) -> None:
    deep = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
    with httpx.Client(base_url=stack.base_url) as http:
        first = http.get("/v1/models")
        connection = first.extensions["network_stream"].get_extra_info("client_addr")
        r = http.post(path, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.text
        again = http.get("/v1/models")
        assert again.status_code == 200
        assert again.extensions["network_stream"].get_extra_info("client_addr") == connection
