"""The Phase-4 provider contract's correlation: request and house ids, and ``htdi``.

Every request has a request id (``X-Request-ID``, or a new one) and may have
a house id (``X-House-ID``); both are echoed on the response and carried by
every log line of the request (and by its jobs, into the worker's logs). A
body's OpenAI ``metadata`` object may name them too (``requestId``,
``houseId``), used when the headers are absent. Answers of chat, completions
and embeddings carry ``htdi``: ``{requestId, latencyMs, houseId?}``, latency
being from the request's arrival to that answer (a stream's final chunk).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Scope

from gateway.errors import APIError

# Longer ids are refused rather than logged and echoed (they are ids, not data).
MAX_ID_LENGTH = 256


class Htdi(msgspec.Struct, omit_defaults=True):
    requestId: str  # noqa: N815 - the contract's names
    latencyMs: float  # noqa: N815
    houseId: str | None = None  # noqa: N815


@dataclass
class Correlation:
    """One request's ids and arrival; the ids from headers win over metadata."""

    request_id: str
    house_id: str | None = None
    arrived: float = field(default_factory=time.perf_counter)
    request_id_from_header: bool = False
    house_id_from_header: bool = False

    @classmethod
    def from_headers(cls, headers: Headers) -> Correlation:
        request_id = _header_id(headers, "x-request-id")
        house_id = _header_id(headers, "x-house-id")
        return cls(
            request_id=request_id or uuid.uuid4().hex,
            house_id=house_id,
            request_id_from_header=request_id is not None,
            house_id_from_header=house_id is not None,
        )

    def log_context(self) -> dict[str, str | None]:
        return {"request_id": self.request_id, "house_id": self.house_id}

    def htdi(self) -> Htdi:
        latency = round(1000 * (time.perf_counter() - self.arrived), 1)
        return Htdi(self.request_id, latency, self.house_id)


def install(scope: Scope) -> Correlation:
    """The request's correlation, kept in its scope for handlers and the response."""
    correlation = Correlation.from_headers(Headers(scope=scope))
    scope.setdefault("state", {})["correlation"] = correlation
    return correlation


def correlation(request: Request) -> Correlation:
    """The request's correlation (a fresh one outside the middleware, in tests)."""
    state = request.scope.setdefault("state", {})
    if "correlation" not in state:
        state["correlation"] = Correlation.from_headers(request.headers)
    found: Correlation = state["correlation"]
    return found


def adopt_metadata(request: Request, metadata: dict[str, Any] | None) -> Correlation:
    """Take ``metadata.requestId`` / ``metadata.houseId`` where no header gave
    the id (400 naming the field if one is not a string id)."""
    found = correlation(request)
    if not metadata:
        return found
    request_id = _metadata_id(metadata, "requestId")
    house_id = _metadata_id(metadata, "houseId")
    if request_id is not None and not found.request_id_from_header:
        found.request_id = request_id
        request.scope["state"]["request_id"] = request_id
    if house_id is not None and not found.house_id_from_header:
        found.house_id = house_id
    structlog.contextvars.bind_contextvars(**found.log_context())
    return found


def _header_id(headers: Headers, name: str) -> str | None:
    value = headers.get(name, "").strip()
    return value[:MAX_ID_LENGTH] if value else None


def _metadata_id(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise APIError(
            400,
            f"'metadata.{key}' must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            param=f"metadata.{key}",
        )
    return value.strip()
