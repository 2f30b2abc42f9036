"""/openapi.json: a valid OpenAPI 3.1 document of every route, from the msgspec schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.openapi import build_document, openapi_path, undocumented
from protocol.config import Config, GatewaySettings, ModelConfig
from tests.e2e.harness import free_port


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(control_endpoint=f"tcp://127.0.0.1:{free_port()}")
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def answer_schema(document: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    """The JSON answer's schema, resolvable on its own (with the components)."""
    responses = document["paths"][path][method]["responses"]
    ok = next(v for k, v in responses.items() if k.startswith("2"))
    return {**ok["content"]["application/json"]["schema"], "components": document["components"]}


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_of_the_app_is_described(client: TestClient, document: dict[str, Any]) -> None:
    assert undocumented(client.app.routes, document) == []  # type: ignore[attr-defined]
    served = {openapi_path(r.path) for r in client.app.routes}  # type: ignore[attr-defined]
    assert set(document["paths"]) == served  # and nothing that is not served


def test_each_operation_has_its_request_and_answers(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    answers = chat["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "text/event-stream"}
    assert document["paths"]["/v1/models/{model}"]["get"]["parameters"][0]["name"] == "model"
    upload = document["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    form = upload["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["format"] == "binary" and "file" in form["required"]
    errors = chat["responses"]["default"]["content"]["application/json"]["schema"]
    assert errors == {"$ref": "#/components/schemas/ErrorEnvelope"}


def test_the_phase4_fields_are_in_the_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert set(schemas["Htdi"]["required"]) == {"requestId", "latencyMs"}
    for name in ("ChatCompletion", "ChatCompletionChunk", "Completion", "EmbeddingList"):
        assert schemas[name]["properties"]["htdi"] == {"$ref": "#/components/schemas/Htdi"}
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
        assert "metadata" in schemas[name]["properties"]
    card = schemas["ModelCard"]["properties"]
    assert {"path", "quantization", "context_length", "capabilities", "family"} <= set(card)


def test_public_routes_need_no_key_and_the_others_may(document: dict[str, Any]) -> None:
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in document["paths"]["/v1/embeddings"]["post"]
    assert {"bearer": []} in document["security"]


@pytest.mark.parametrize(
    "path",
    ["/health", "/v1/models", "/v1/models/{model}"]
    + ["/health/live", "/health/ready", "/v1/queue/stats"]
    + ["/admin/models", "/admin/models/{model}", "/admin/memory"],
)
def test_real_answers_validate_against_their_schemas(
    client: TestClient, document: dict[str, Any], path: str
) -> None:
    answer = client.get(path.replace("{model}", "m")).json()
    jsonschema.validate(answer, answer_schema(document, path))


def test_the_document_is_the_same_each_time() -> None:
    assert build_document() == build_document()
