"""The /v1 rate limit: a token bucket per key (or client address), on a stand-in clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.rate_limit import RateLimiter
from protocol.config import Config, ConfigError, GatewaySettings, ModelConfig, parse_rate_limit
from tests.e2e.harness import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_settings() -> None:
    assert parse_rate_limit("100/minute") == (100, 60.0)
    assert parse_rate_limit("10/second") == (10, 1.0)
    assert parse_rate_limit("5000 / hour") == (5000, 3600.0)
    assert parse_rate_limit("20/10s") == (20, 10.0)
    assert parse_rate_limit("1/day") == (1, 86400.0)


@pytest.mark.parametrize("bad", ["100", "0/minute", "10/fortnight", "5/ms", "3/0s", "x/minute"])
def test_a_bad_rate_limit_setting_says_what_is_expected(bad: str) -> None:
    with pytest.raises(ConfigError, match="100/minute"):
        parse_rate_limit(bad)


def test_a_burst_up_to_the_limit_then_the_wait_for_the_next_one() -> None:
    clock = Clock()
    limiter = RateLimiter(3, 60.0, clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(20.0)  # one request every 20 s
    clock.now += 5
    assert limiter.acquire("a") == pytest.approx(15.0)  # a refused request spends nothing
    clock.now += 15
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(20.0)


def test_each_client_has_its_own_bucket() -> None:
    limiter = RateLimiter(1, 1.0, Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_a_bucket_refills_no_further_than_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 10.0, clock)
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(3)][-1] > 0  # still a burst of 2


def test_idle_clients_are_forgotten_once_there_are_many() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 1.0, clock, max_buckets=2)
    limiter.acquire("a")
    limiter.acquire("b")
    clock.now += 1.0  # both are full again: forgetting them changes nothing
    limiter.acquire("c")
    assert set(limiter._buckets) == {"c"}


def app_client(rate_limit: str | None = None, api_keys: list[str] | None = None) -> TestClient:
    gateway = GatewaySettings(
        control_endpoint=f"tcp://127.0.0.1:{free_port()}",
        rate_limit=rate_limit,
        api_keys=api_keys or [],
    )
    model = ModelConfig("m", "llm", "/nowhere", f"tcp://127.0.0.1:{free_port()}")
    return TestClient(create_app(Config(gateway, [model])))


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    with app_client(rate_limit="2/minute", api_keys=["sk-a", "sk-b"]) as client:
        yield client


def test_over_the_limit_is_a_429_with_retry_after(keyed: TestClient) -> None:
    headers = {"Authorization": "Bearer sk-a"}
    assert [keyed.get("/v1/models", headers=headers).status_code for _ in range(2)] == [200, 200]
    r = keyed.get("/v1/models", headers=headers)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert r.headers["x-ratelimit-limit-requests"] == "2"
    error = r.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in error["message"]


def test_the_limit_is_per_key(keyed: TestClient) -> None:
    for _ in range(2):
        keyed.get("/v1/models", headers={"Authorization": "Bearer sk-a"})
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer sk-b"}).status_code == 200


def test_a_wrong_key_is_a_401_and_spends_nothing(keyed: TestClient) -> None:
    for _ in range(3):
        assert keyed.get("/v1/models", headers={"Authorization": "Bearer sk-x"}).status_code == 401
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer sk-a"}).status_code == 200


def test_health_and_metrics_are_not_limited(keyed: TestClient) -> None:
    for _ in range(4):
        assert keyed.get("/health").status_code == 200


def test_the_messages_api_gets_its_429_in_anthropics_envelope(keyed: TestClient) -> None:
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        r = keyed.post("/v1/messages", json=body, headers={"x-api-key": "sk-a"})
    assert r.status_code == 429 and r.headers["retry-after"]
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"


def test_without_keys_the_limit_is_per_client_address_and_counted_under_its_route() -> None:
    with app_client(rate_limit="1/hour") as client:
        assert client.get("/v1/models").status_code == 200
        r = client.get("/v1/models")
        assert r.status_code == 429 and r.headers["retry-after"] == "3600"
        metrics = client.get("/metrics").text
        assert 'mlx_gateway_requests_total{path="/v1/models",status="429"} 1.0' in metrics


def test_no_rate_limit_by_default() -> None:
    with app_client() as client:
        assert all(client.get("/v1/models").status_code == 200 for _ in range(20))
