"""POST /v1/embeddings: one job per request, every input embedded by the worker.

The worker sends each vector as little-endian float32 bytes, which is exactly
what ``encoding_format: "base64"`` carries (the OpenAI SDKs ask for base64 by
default and decode it with numpy), so that format costs one base64 encode;
``"float"`` writes the same numbers as a JSON list.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import decode_json
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.embedding_schemas import EmbeddingData, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.phase4 import Correlation, adopt_metadata
from protocol.messages import EmbeddingJob, Embeddings, Finished

FAMILIES = ("embeddings",)
# OpenAI's own limit on the inputs of one request.
MAX_INPUTS = 2048


async def embeddings(request: Request) -> Response:
    body = await decode_json(request, EmbeddingRequest)
    ids = adopt_metadata(request, body.metadata)
    worker = request.app.state.registry.resolve(body.model, FAMILIES)
    job = EmbeddingJob(worker.new_job_id(), _inputs(body.input), body.dimensions)
    stream = await submit_job(request, worker, job)
    return await respond_while_connected(request, _reply(stream, body, worker.model.name, ids))


async def _reply(
    stream: JobStream, body: EmbeddingRequest, model: str, ids: Correlation
) -> Response:
    vectors: list[bytes] | None = None
    tokens = 0
    async for event in stream.events():
        if isinstance(event, Embeddings):
            vectors = event.vectors
        elif isinstance(event, Finished):
            tokens = event.usage.prompt_tokens
    if vectors is None:
        raise APIError(500, "the worker finished without embeddings")
    encode = _base64 if body.encoding_format == "base64" else _floats
    reply = EmbeddingList(
        object="list",
        data=[EmbeddingData("embedding", i, encode(v)) for i, v in enumerate(vectors)],
        model=model,
        usage=EmbeddingUsage(tokens, tokens),
        htdi=ids.htdi(),
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


def _inputs(value: str | list[Any]) -> list[str | list[int]]:
    """The request's inputs as texts and token id lists; a 400 naming a bad one."""
    if isinstance(value, str):
        return [_text(value, "input")]
    if not value:
        raise APIError(400, "'input' must not be empty", param="input")
    if all(_is_token(t) for t in value):
        return [value]
    if len(value) > MAX_INPUTS:
        raise APIError(
            400, f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed", param="input"
        )
    inputs: list[str | list[int]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            inputs.append(_text(item, f"input[{i}]"))
        elif isinstance(item, list) and item and all(_is_token(t) for t in item):
            inputs.append(item)
        else:
            raise APIError(
                400,
                f"input[{i}] must be a non-empty string or a non-empty list of token ids "
                "(integers >= 0)",
                param=f"input[{i}]",
            )
    return inputs


def _text(text: str, param: str) -> str:
    if not text:
        raise APIError(400, f"'{param}' must not be an empty string", param=param)
    return text


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _floats(vector: bytes) -> list[float]:
    values = array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()  # the wire format is little-endian
    return values.tolist()


def _base64(vector: bytes) -> str:
    return base64.b64encode(vector).decode("ascii")
