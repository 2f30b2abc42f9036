"""The Phase-4 contract's correlation: X-House-ID, metadata ids, htdi."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.errors import APIError
from gateway.phase4 import MAX_ID_LENGTH, Correlation, adopt_metadata
from protocol.config import Config, GatewaySettings, ModelConfig
from tests.e2e.harness import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.fixture(autouse=True)
def no_log_context_left() -> Iterator[None]:
    """adopt_metadata binds the ids for the request's log lines; outside a
    request (these tests) they would stay bound for the next test."""
    yield
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(control_endpoint=f"tcp://127.0.0.1:{free_port()}")
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


def test_headers_give_the_ids_and_a_missing_request_id_is_made() -> None:
    given = Correlation.from_headers(Headers({"x-request-id": "r-1", "x-house-id": "h-1"}))
    assert (given.request_id, given.house_id) == ("r-1", "h-1")
    made = Correlation.from_headers(Headers({}))
    assert len(made.request_id) == 32 and made.house_id is None


def test_an_over_long_header_id_is_cut() -> None:
    found = Correlation.from_headers(Headers({"x-house-id": "h" * 1000}))
    assert found.house_id == "h" * MAX_ID_LENGTH


def test_metadata_ids_are_used_when_the_headers_are_absent() -> None:
    request = request_with({})
    found = adopt_metadata(request, {"requestId": "meta-r", "houseId": "meta-h", "other": 1})
    assert (found.request_id, found.house_id) == ("meta-r", "meta-h")
    assert request.scope["state"]["request_id"] == "meta-r"


def test_header_ids_win_over_metadata() -> None:
    request = request_with({"X-Request-ID": "hdr-r", "X-House-ID": "hdr-h"})
    found = adopt_metadata(request, {"requestId": "meta-r", "houseId": "meta-h"})
    assert (found.request_id, found.house_id) == ("hdr-r", "hdr-h")


@pytest.mark.parametrize("bad", [7, "", "x" * (MAX_ID_LENGTH + 1)])
def test_a_metadata_id_that_is_not_a_string_id_is_a_400_naming_it(bad: object) -> None:
    with pytest.raises(APIError) as caught:
        adopt_metadata(request_with({}), {"houseId": bad})
    assert caught.value.status == 400 and caught.value.param == "metadata.houseId"


def test_htdi_has_the_ids_and_the_latency_so_far() -> None:
    found = Correlation("r", "h", arrived=0.0)
    htdi = found.htdi()
    assert (htdi.requestId, htdi.houseId) == ("r", "h") and htdi.latencyMs > 0


def test_htdi_leaves_out_a_missing_house_id() -> None:
    import msgspec

    encoded = msgspec.json.decode(msgspec.json.encode(Correlation("r").htdi()))
    assert set(encoded) == {"requestId", "latencyMs"}


def test_x_house_id_is_echoed_with_the_request_id_even_on_an_error(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=CHAT, headers={"X-House-ID": "house-7"})
    assert r.status_code == 503  # no worker runs: the ids come back all the same
    assert r.headers["x-house-id"] == "house-7" and r.headers["x-request-id"]
    assert "x-house-id" not in client.get("/health").headers


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/completions", {"model": "m", "prompt": "hi"}),
        ("/v1/embeddings", {"model": "m", "input": "hi"}),
    ],
)
def test_metadata_ids_come_back_as_headers(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    metadata = {"requestId": "from-metadata", "houseId": "house-9"}
    r = client.post(path, json={**body, "metadata": metadata})
    assert r.headers["x-request-id"] == "from-metadata"
    assert r.headers["x-house-id"] == "house-9"
