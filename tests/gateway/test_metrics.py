"""/metrics with prometheus-client: every family parses; requests by route;
each worker's state and load read from its heartbeat when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.metrics import WorkerCollector, metrics_registry
from protocol.config import Config, GatewaySettings, ModelConfig
from protocol.messages import Pong, SupervisorStatus, WorkerStats
from tests.e2e.harness import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
KEY = {"Authorization": "Bearer sk-good"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(
        control_endpoint=f"tcp://127.0.0.1:{free_port()}", api_keys=["sk-good"]
    )
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    with TestClient(create_app(Config(settings, [model]))) as client:
        yield client


def samples(text: str) -> dict[str, list[Sample]]:
    """Every family's samples, by family name; fails unless the text parses."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, sample: str, /, **labels: str) -> float:
    matches = [s.value for s in found[family] if s.name == sample and s.labels == labels]
    assert len(matches) == 1, (family, sample, labels, found[family])
    return matches[0]


def test_every_family_parses_and_requests_are_counted_by_route(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=CHAT, headers=KEY)
    client.get("/v1/models/m", headers=KEY)
    client.get("/no/such/path")
    r = client.get("/metrics")  # like /health, no key: scrapers run inside the network
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(r.text)
    total = "mlx_gateway_requests_total"
    assert value(found, "mlx_gateway_requests", total, path="/v1/chat/completions", status="503")
    # Route templates, not raw paths, so labels stay bounded.
    assert value(found, "mlx_gateway_requests", total, path="/v1/models/{model:path}", status="200")
    assert value(found, "mlx_gateway_requests", total, path="other", status="404") == 1
    duration = "mlx_gateway_request_duration_seconds"
    assert value(found, duration, duration + "_count", path="/v1/chat/completions") == 1


def test_each_model_has_its_series_from_the_start(client: TestClient) -> None:
    found = samples(client.get("/metrics").text)
    ttft = "mlx_gateway:time_to_first_token_seconds"
    assert value(found, ttft, ttft + "_count", model_name="m") == 0
    assert (
        value(found, "mlx_gateway:prompt_tokens", "mlx_gateway:prompt_tokens_total", model_name="m")
        == 0
    )
    info = "mlx_gateway:model_info"
    assert value(found, info, info, model_name="m", family="llm") == 1
    state = "mlx_gateway:model_state"
    assert value(found, state, state, model_name="m", state="down") == 1
    assert value(found, state, state, model_name="m", state="ready") == 0
    in_flight = "mlx_gateway:model_requests_in_flight"
    assert value(found, in_flight, in_flight, model_name="m") == 0


def test_openmetrics_when_the_scraper_asks_for_it(client: TestClient) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse

    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert any(f.name == "mlx_gateway:model_state" for f in parse(r.text))


@dataclass
class StandInWorker:
    model: ModelConfig
    state: str
    in_flight: int
    pong: Pong | None
    last_pong: float
    supervisor: SupervisorStatus | None


def test_the_collector_reads_each_workers_heartbeat_and_supervisor() -> None:
    model = ModelConfig("w", "kokoro", "/x", "tcp://127.0.0.1:1")
    stats = WorkerStats(active=2, queued=5, rss_bytes=300, mlx_active_bytes=100, mlx_peak_bytes=200)
    pong = Pong(0, "i", 42, "w", "kokoro", "ready", 10, stats)
    supervisor = SupervisorStatus(
        "w", "running", 42, 3, restarts_by_reason={"crashed": 2, "killed": 1}
    )
    workers = [StandInWorker(model, "ready", 4, pong, 99.0, supervisor)]
    registry, _, _ = metrics_registry(lambda: workers)  # type: ignore[arg-type, return-value]
    registry.register(WorkerCollector(lambda: workers, clock=lambda: 100.5))  # type: ignore[arg-type, return-value]
    by_name = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }
    w = (("model_name", "w"),)
    assert by_name[("mlx_gateway:num_requests_running", w)] == 2
    assert by_name[("mlx_gateway:num_requests_waiting", w)] == 5
    assert by_name[("mlx_gateway:model_requests_in_flight", w)] == 4
    assert by_name[("mlx_gateway:model_loop_age_seconds", w)] == pytest.approx(1.5)
    restarts = "mlx_gateway:model_restarts_total"
    assert by_name[(restarts, (("model_name", "w"), ("reason", "crashed")))] == 2
    assert by_name[(restarts, (("model_name", "w"), ("reason", "killed")))] == 1
    assert by_name[("mlx_gateway:model_state", (("model_name", "w"), ("state", "ready")))] == 1
    memory = "mlx_gateway:model_memory_bytes"
    assert by_name[(memory, (("kind", "rss"), ("model_name", "w")))] == 300
    assert by_name[(memory, (("kind", "mlx_peak"), ("model_name", "w")))] == 200


def test_a_worker_without_a_heartbeat_has_no_load_figures() -> None:
    model = ModelConfig("w", "llm", "/x", "tcp://127.0.0.1:1")
    workers = [StandInWorker(model, "down", 0, None, 0.0, None)]
    registry, _, _ = metrics_registry(lambda: workers)  # type: ignore[arg-type, return-value]
    names = {s.name for family in registry.collect() for s in family.samples}
    assert "mlx_gateway:model_state" in names
    assert "mlx_gateway:num_requests_running" not in names
