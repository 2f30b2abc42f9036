"""Binding loopback unless keys guard the port; constant-time key checks."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from gateway.security import (
    InsecureBindError,
    check_bind,
    is_loopback,
    key_matches,
    presented_key,
)
from protocol.config import GatewaySettings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1"])
def test_hosts_that_serve_the_network(host: str) -> None:
    assert not is_loopback(host)


def test_a_public_host_without_keys_is_refused_with_what_to_do() -> None:
    with pytest.raises(InsecureBindError) as caught:
        check_bind("0.0.0.0", GatewaySettings())
    message = str(caught.value)
    assert "'0.0.0.0'" in message and "api_keys" in message
    assert "allow_insecure_public" in message and "127.0.0.1" in message


@pytest.mark.parametrize(
    "settings",
    [
        GatewaySettings(api_keys=["sk-1"]),
        GatewaySettings(allow_insecure_public=True),
    ],
)
def test_a_public_host_with_keys_or_explicitly_allowed_starts(settings: GatewaySettings) -> None:
    check_bind("0.0.0.0", settings)


def test_loopback_needs_no_key() -> None:
    check_bind("127.0.0.1", GatewaySettings())


def test_the_presented_key_is_the_bearer_token_or_x_api_key() -> None:
    assert presented_key(Headers({"authorization": "Bearer  sk-a "})) == b"sk-a"
    assert presented_key(Headers({"x-api-key": "sk-b"})) == b"sk-b"
    assert presented_key(Headers({"authorization": "Basic xyz", "x-api-key": "sk-c"})) == b"sk-c"
    assert presented_key(Headers({})) == b""


def test_a_key_matches_any_of_the_keys_and_nothing_else() -> None:
    keys = [b"sk-first", b"sk-second", b"sk-third"]
    assert key_matches(b"sk-second", keys) and key_matches(b"sk-third", keys)
    assert not key_matches(b"sk-secon", keys)
    assert not key_matches(b"", keys)
    assert not key_matches(b"sk-first", [])


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert key_matches(b"sk-1", [b"sk-1", b"sk-2", b"sk-3"])
    assert len(calls) == 3  # no early exit on the first match
