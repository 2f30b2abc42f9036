"""Gateway behaviour that needs no worker: auth, limits, envelopes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from protocol.config import Config, GatewaySettings, ModelConfig
from tests.e2e.harness import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(
        control_endpoint=f"tcp://127.0.0.1:{free_port()}",
        api_keys=["sk-good"],
        max_body_bytes=1024,
        cors_origins=["http://app.example"],
    )
    # A model whose worker never runs: it must answer 503, not hang.
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


def test_missing_or_wrong_key_is_401(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-bad"}, {"Authorization": "sk-good"}):
        r = client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"


def test_anthropic_x_api_key_header_is_accepted(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 4}
    r = client.post("/v1/messages", json=body, headers={"x-api-key": "sk-good"})
    assert r.status_code == 503  # past auth: the model's worker is not running
    assert r.json()["error"]["type"] == "overloaded_error"
    r = client.post("/v1/messages", json=body, headers={"x-api-key": "sk-bad"})
    assert r.status_code == 401
    assert "x-api-key" in r.json()["error"]["message"]


def test_anthropic_body_over_the_limit_is_413_in_anthropic_envelope(client: TestClient) -> None:
    big = {**CHAT, "max_tokens": 4, "messages": [{"role": "user", "content": "x" * 2000}]}
    r = client.post("/v1/messages", json=big, headers={"x-api-key": "sk-good"})
    assert r.status_code == 413
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "request_too_large"


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    r = client.post("/v1/chat/completions", json=big, headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_model_without_a_running_worker_is_503_naming_it(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "model_not_ready"
    assert "'m'" in error["message"] and "not running" in error["message"]


def test_cors_allows_only_configured_origins(client: TestClient) -> None:
    def preflight(origin: str) -> int:
        return client.options(
            "/v1/chat/completions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        ).status_code

    assert preflight("http://app.example") == 200
    assert preflight("http://evil.example") == 400


def test_method_not_allowed_is_an_envelope(client: TestClient) -> None:
    r = client.get("/v1/chat/completions", headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 405
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_metrics_count_requests_by_route_and_report_each_model(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-good"})
    client.get("/v1/models/m", headers={"Authorization": "Bearer sk-good"})
    client.get("/no/such/path")
    r = client.get("/metrics")  # like /health, no key: scrapers run inside the network
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    assert 'mlx_gateway_requests_total{path="/v1/chat/completions",status="503"} 1' in lines
    # Route templates, not raw paths, so labels stay bounded.
    assert 'mlx_gateway_requests_total{path="/v1/models/{model:path}",status="200"} 1' in lines
    assert 'mlx_gateway_requests_total{path="other",status="404"} 1' in lines
    assert 'mlx_gateway_request_duration_seconds_count{path="/v1/chat/completions"} 1' in lines
    assert 'mlx_gateway_model_info{model="m",family="llm"} 1' in lines
    assert 'mlx_gateway_model_state{model="m",state="down"} 1' in lines
    assert 'mlx_gateway_model_in_flight{model="m"} 0' in lines


def test_admin_restart_needs_a_key_and_a_running_worker(client: TestClient) -> None:
    assert client.post("/admin/models/m/restart").status_code == 401
    r = client.post("/admin/models/m/restart", headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 503
    assert "'m'" in r.json()["error"]["message"]
