"""Gateway behaviour that needs no worker: auth, limits, envelopes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
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


def test_admin_restart_needs_a_key_and_a_running_worker(client: TestClient) -> None:
    assert client.post("/admin/models/m/restart").status_code == 401
    r = client.post("/admin/models/m/restart", headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 503
    assert "'m'" in r.json()["error"]["message"]


# --- behind a real server: errors never cost the client its connection ----------

DEEP = b'{"a":' * 20_000 + b"1" + b"}" * 20_000  # 20,000 nested objects
JSON_ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/audio/speech",
    "/v1/images/generations",
]
ANTHROPIC_ENDPOINTS = ["/v1/messages", "/v1/messages/count_tokens"]


@pytest.fixture
async def served() -> AsyncIterator[Starlette]:
    """The app behind a real uvicorn (keep-alive, as ``python -m gateway`` runs
    it) on a socket that listens before the server starts, so no wait is needed."""
    settings = GatewaySettings(control_endpoint=f"tcp://127.0.0.1:{free_port()}")
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    app = create_app(Config(settings, [model]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    app.state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield app
    finally:
        server.should_exit = True
        await task
        sock.close()


def local_address(response: httpx.Response) -> tuple[str, int]:
    """The client side of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


async def on_one_connection(app: Starlette, method: str, path: str, body: bytes) -> httpx.Response:
    """``method path`` between two requests on one keep-alive connection; fails
    unless all three went over the same connection."""
    async with httpx.AsyncClient(base_url=app.state.base_url) as http:
        before = await http.get("/health")
        connection = local_address(before)
        response = await http.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        assert local_address(response) == connection
        after = await http.get("/health")
        assert after.status_code == 200 and local_address(after) == connection
    return response


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_deeply_nested_json_is_a_400_and_the_connection_stays_open(
    served: Starlette, path: str
) -> None:
    r = await on_one_connection(served, "POST", path, DEEP)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested" in error["message"]


@pytest.mark.parametrize("path", ANTHROPIC_ENDPOINTS)
async def test_deeply_nested_json_on_the_messages_api_is_a_400_in_its_envelope(
    served: Starlette, path: str
) -> None:
    r = await on_one_connection(served, "POST", path, DEEP)
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "nested" in body["error"]["message"]


async def test_an_unexpected_error_is_a_500_envelope_and_the_connection_stays_open(
    served: Starlette,
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    served.router.add_route("/v1/broken", broken, methods=["POST"])
    r = await on_one_connection(served, "POST", "/v1/broken", b"{}")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"] == "server_error" and "RuntimeError: a bug" in error["message"]
    assert r.headers["x-request-id"]


async def test_an_unexpected_error_in_the_messages_api_is_a_500_in_its_envelope(
    served: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> NoReturn:
        raise RuntimeError("a bug")

    monkeypatch.setattr(served.state.registry, "resolve", broken)
    body = b'{"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}'
    r = await on_one_connection(served, "POST", "/v1/messages", body)
    assert r.status_code == 500
    reply = r.json()
    assert reply["type"] == "error" and reply["error"]["type"] == "api_error"
    assert "RuntimeError: a bug" in reply["error"]["message"]


async def test_deeply_nested_tool_call_arguments_are_a_400_naming_them(served: Starlette) -> None:
    arguments = "[" * 20_000 + "]" * 20_000
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "assistant", "content": "", "tool_calls": [call]}]
    body = msgspec.json.encode({"model": "m", "messages": messages})
    r = await on_one_connection(served, "POST", "/v1/chat/completions", body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0].tool_calls[0].function.arguments"


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    settings = GatewaySettings(
        control_endpoint=f"tcp://127.0.0.1:{free_port()}",
        api_keys=["sk-user"],
        admin_keys=["sk-admin"],
    )
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


def test_an_inference_key_on_admin_is_403_and_an_admin_key_passes(keyed: TestClient) -> None:
    user, boss = {"Authorization": "Bearer sk-user"}, {"Authorization": "Bearer sk-admin"}
    refused = keyed.get("/admin/models", headers=user)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert keyed.get("/admin/models").status_code == 401
    assert keyed.get("/admin/models", headers={"Authorization": "Bearer sk-bad"}).status_code == 401
    listed = keyed.get("/admin/models", headers=boss)
    assert listed.status_code == 200 and listed.json()["data"][0]["name"] == "m"
    # The admin key works for inference too; the inference key still does.
    assert keyed.get("/v1/models", headers=boss).status_code == 200
    assert keyed.get("/v1/models", headers=user).status_code == 200


def test_ready_is_503_naming_the_startup_models_not_ready(client: TestClient) -> None:
    r = client.get("/health/ready")
    assert r.status_code == 503
    assert r.json() == {"status": "not_ready", "waiting": {"m": "down"}}
    assert client.get("/health/live").json()["status"] == "ok"


def test_every_response_carries_its_process_time(client: TestClient) -> None:
    for r in (client.get("/health"), client.get("/no/such/path"), client.post("/v1/models")):
        assert float(r.headers["X-Process-Time"]) >= 0


def test_queue_stats_count_each_model(client: TestClient) -> None:
    r = client.get("/v1/queue/stats", headers={"Authorization": "Bearer sk-good"})
    assert r.status_code == 200
    assert r.json()["models"]["m"] == {
        "state": "down",
        "active": 0,
        "pending": 0,
        "processed": 0,
        "max_pending": 256,
    }
