"""/v1/responses behaviour that needs no worker: request checks and stored responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.responses_input import input_items
from protocol.config import Config, GatewaySettings, ModelConfig
from tests.e2e.harness import free_port
from tests.gateway.test_responses_events import skeleton
from tests.responses_spec import validate_response

BASE = {"model": "m", "input": "hi"}
# A request as Codex CLI 0.171 sends it (shape captured from `codex exec`).
CODEX = {
    "model": "m",
    "instructions": None,
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "sandbox"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
    ],
    "tools": [
        {
            "type": "function",
            "name": "exec_command",
            "description": "Run a command",
            "strict": False,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
        {
            "type": "namespace",
            "name": "mcp__fs",
            "description": "files",
            "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}}],
        },
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0198-conversation",
    "client_metadata": {"originator": "codex_exec"},
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(
        control_endpoint=f"tcp://127.0.0.1:{free_port()}", responses_store=":memory:"
    )
    # A model whose worker never runs: requests that pass the checks answer 503.
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


def post(client: TestClient, **fields: Any) -> tuple[int, dict[str, Any]]:
    r = client.post("/v1/responses", json={**BASE, **fields})
    return r.status_code, r.json()


def test_a_codex_request_passes_every_check(client: TestClient) -> None:
    r = client.post("/v1/responses", json=CODEX)
    assert r.status_code == 503  # checked, then sent to the model: its worker is down
    assert r.json()["error"]["code"] == "model_not_ready"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"input": 5}, "input"),
        ({"tools": "all"}, "tools"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": 5}}, "metadata[...]"),
        ({"background": True, "store": False}, "store"),
        ({"background": True, "stream": True}, "stream"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"conversation": "conv_1"}, "conversation"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}
                ]
            },
            "input[0].content[0]",
        ),
        ({"tools": [{"type": "custom", "name": "x"}]}, "tools[0].type"),
        ({"input": []}, "input"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(client: TestClient, fields: Any, param: str) -> None:
    status, body = post(client, **fields)
    assert status == 400, body
    assert body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error"


def test_an_unknown_previous_response_is_openai_s_400(client: TestClient) -> None:
    _, body = post(client, previous_response_id="resp_nope")
    assert body["error"]["code"] == "previous_response_not_found"
    assert "resp_nope" in body["error"]["message"]


def test_unknown_extra_fields_are_ignored(client: TestClient) -> None:
    status, body = post(client, client_metadata={"a": 1}, some_future_field=[1, 2])
    assert status == 503, body


def stored(client: TestClient, **fields: Any) -> str:
    response = skeleton(id=f"resp_{len(fields)}x", status="completed", **fields)
    items = input_items([{"role": "user", "content": f"turn {i}"} for i in range(5)])
    store = client.app.state.responses.store  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(store.put, response, items)  # on the app's loop, as the gateway does
    return response.id


def test_a_stored_response_is_retrieved_as_the_spec_has_it(client: TestClient) -> None:
    response_id = stored(client)
    r = client.get(f"/v1/responses/{response_id}")
    assert r.status_code == 200
    validate_response(r.json())
    assert r.json()["id"] == response_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses/resp_nope"),
        ("DELETE", "/v1/responses/resp_nope"),
        ("GET", "/v1/responses/resp_nope/input_items"),
        ("POST", "/v1/responses/resp_nope/cancel"),
    ],
)
def test_an_unknown_response_is_404(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path)
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "response_id"


def test_delete_answers_the_deleted_object_then_404(client: TestClient) -> None:
    response_id = stored(client)
    r = client.delete(f"/v1/responses/{response_id}")
    assert r.json() == {"id": response_id, "object": "response.deleted", "deleted": True}
    assert client.get(f"/v1/responses/{response_id}").status_code == 404


def test_input_items_are_paginated_newest_first_by_default(client: TestClient) -> None:
    response_id = stored(client)
    url = f"/v1/responses/{response_id}/input_items"

    def texts(page: dict[str, Any]) -> list[str]:
        return [item["content"][0]["text"] for item in page["data"]]

    first = client.get(url, params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert texts(first) == ["turn 4", "turn 3"]
    assert (
        first["first_id"] == first["data"][0]["id"] and first["last_id"] == first["data"][1]["id"]
    )
    rest = client.get(url, params={"limit": 10, "after": first["last_id"]}).json()
    assert texts(rest) == ["turn 2", "turn 1", "turn 0"] and rest["has_more"] is False
    ascending = client.get(url, params={"order": "asc"}).json()
    assert texts(ascending) == [f"turn {i}" for i in range(5)]
    for params, param in (
        ({"limit": 0}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "x"}, "after"),
    ):
        r = client.get(url, params=params)
        assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_only_background_responses_can_be_cancelled(client: TestClient) -> None:
    response_id = stored(client)
    r = client.post(f"/v1/responses/{response_id}/cancel")
    assert r.status_code == 400


def test_input_tokens_checks_the_request_like_create(client: TestClient) -> None:
    r = client.post("/v1/responses/input_tokens", json={"model": "m", "input": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = client.post("/v1/responses/input_tokens", json={"model": "m", "input": "hi"})
    assert r.status_code == 503


def test_a_vision_only_field_on_a_text_request_is_still_decoded(client: TestClient) -> None:
    # detail is a known field of image parts: a bad value names it.
    parts = [{"type": "input_image", "image_url": "data:,", "detail": "ultra"}]
    status, body = post(client, input=[{"role": "user", "content": parts}])
    assert status == 400 and body["error"]["param"] == "input[0].content[0].detail"


def test_the_response_struct_round_trips_through_json() -> None:
    response = skeleton()
    assert msgspec.json.decode(msgspec.json.encode(response), type=type(response)) == response
