"""OpenAI Embeddings API shapes (``/v1/embeddings``), as msgspec Structs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.phase4 import Htdi


class EmbeddingRequest(msgspec.Struct):
    model: str
    # str | list[str] | list[int] | list[list[int]]; msgspec unions allow one
    # list type, so the items are checked by the handler.
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None
    # OpenAI's metadata object; the Phase-4 contract reads requestId and houseId from it.
    metadata: dict[str, Any] | None = None


class EmbeddingData(msgspec.Struct):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
    htdi: Htdi | UnsetType = UNSET
