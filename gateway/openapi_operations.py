"""What :mod:`gateway.openapi` describes of one route: an :class:`Operation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import ErrorEnvelope

JSON = "application/json"
SSE = "text/event-stream"
TEXT = {"type": "string"}


@dataclass(frozen=True)
class Multipart:
    """A multipart form: text fields from a Struct, plus file parts."""

    fields: type[msgspec.Struct]
    files: tuple[str, ...]
    required_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as Starlette writes it: /v1/models/{model:path}
    summary: str
    tag: str
    body: Any = None  # a Struct (JSON), a Multipart, or None
    # Media type -> a type (its schema), a tuple of types (any of them), or a
    # schema dict (BINARY, TEXT).
    answers: dict[str, Any] = field(default_factory=dict)
    # Media types whose answer is a stream of server-sent events.
    streamed: tuple[str, ...] = ()
    error: Any = ErrorEnvelope
    query: tuple[str, ...] = ()
    public: bool = False  # needs no API key
    status: str = "200"
