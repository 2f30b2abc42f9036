"""GET /openapi.json: an OpenAPI 3.1 document of every route, from the msgspec schemas.

Each route's request and answers are the Structs its handler decodes and
encodes (the schema modules); :func:`msgspec.json.schema_components` turns
them into JSON Schema 2020-12, which is OpenAPI 3.1's own dialect, under
``components/schemas``. :data:`OPERATIONS` is the one table to extend with a
new route; ``tests/gateway/test_openapi.py`` fails for a route it lacks.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import anthropic_schemas as anthropic
from gateway import embedding_schemas as embeddings
from gateway import image_schemas as images
from gateway import openai_schemas as openai
from gateway import responses_events as response_events
from gateway import responses_objects as response_objects
from gateway import responses_schemas as responses
from gateway import speech_schemas as speech
from gateway import transcription_schemas as transcription
from gateway.audio_encoding import MEDIA_TYPES as AUDIO_MEDIA_TYPES
from gateway.openapi_operations import JSON, SSE, TEXT, Multipart, Operation
from gateway.openapi_service import SERVICE_OPERATIONS

REF = "#/components/schemas/{name}"
BINARY = {"type": "string", "format": "binary"}
STREAM_NOTE = "Server-sent events: each `data:` line holds one of these as JSON"


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/chat/completions",
        "Chat completion (streamed with stream: true)",
        "OpenAI",
        openai.ChatCompletionRequest,
        {JSON: openai.ChatCompletion, SSE: openai.ChatCompletionChunk},
        streamed=(SSE,),
    ),
    Operation(
        "POST",
        "/v1/completions",
        "Text completion (streamed with stream: true)",
        "OpenAI",
        openai.CompletionRequest,
        {JSON: openai.Completion, SSE: openai.Completion},
        streamed=(SSE,),
    ),
    Operation(
        "POST",
        "/v1/embeddings",
        "Embeddings of one or more inputs",
        "OpenAI",
        embeddings.EmbeddingRequest,
        {JSON: embeddings.EmbeddingList},
    ),
    Operation(
        "POST",
        "/v1/responses",
        "Create a model response (streamed with stream: true; the SSE event: line is its type)",
        "OpenAI",
        responses.ResponseRequest,
        {JSON: response_objects.Response, SSE: response_events.StreamEvent},
        streamed=(SSE,),
    ),
    Operation(
        "POST",
        "/v1/responses/input_tokens",
        "Count a response request's input tokens",
        "OpenAI",
        responses.InputTokensRequest,
        {JSON: response_objects.InputTokens},
    ),
    Operation(
        "GET",
        "/v1/responses/{response_id}",
        "A stored response",
        "OpenAI",
        answers={JSON: response_objects.Response},
    ),
    Operation(
        "DELETE",
        "/v1/responses/{response_id}",
        "Delete a stored response",
        "OpenAI",
        answers={JSON: response_objects.DeletedResponse},
    ),
    Operation(
        "GET",
        "/v1/responses/{response_id}/input_items",
        "A stored response's input items, paginated",
        "OpenAI",
        answers={JSON: response_objects.ItemList},
        query=("after", "limit", "order"),
    ),
    Operation(
        "POST",
        "/v1/responses/{response_id}/cancel",
        "Cancel a background response",
        "OpenAI",
        answers={JSON: response_objects.Response},
    ),
    Operation(
        "POST",
        "/v1/messages",
        "Anthropic Messages (streamed with stream: true)",
        "Anthropic",
        anthropic.MessagesRequest,
        {JSON: anthropic.Message, SSE: anthropic.StreamEvent},
        streamed=(SSE,),
        error=anthropic.ErrorResponse,
    ),
    Operation(
        "POST",
        "/v1/messages/count_tokens",
        "Anthropic token count of a message request",
        "Anthropic",
        anthropic.CountTokensRequest,
        {JSON: anthropic.TokenCount},
        error=anthropic.ErrorResponse,
    ),
    *(
        Operation(
            "POST",
            f"/v1/audio/{task}",
            f"Speech to text ({task.removesuffix('s')}); text, srt and vtt answer text/plain",
            "OpenAI",
            Multipart(transcription.TranscriptionFields, ("file",), ("file",)),
            {
                JSON: (transcription.TranscriptionJSON, transcription.TranscriptionVerboseJSON),
                "text/plain": TEXT,
            },
        )
        for task in ("transcriptions", "translations")
    ),
    Operation(
        "POST",
        "/v1/audio/speech",
        "Text to speech: audio bytes, SSE events, or JSON with visemes (include_visemes)",
        "OpenAI",
        speech.SpeechRequest,
        {
            **dict.fromkeys(sorted(set(AUDIO_MEDIA_TYPES.values())), BINARY),
            JSON: speech.SpeechWithVisemes,
            SSE: speech.AudioDelta | speech.VisemesEvent | speech.AudioDone,
        },
        streamed=(SSE,),
    ),
    Operation(
        "GET",
        "/v1/audio/voices",
        "The voices of every speech model (or of ?model=)",
        "OpenAI",
        answers={JSON: speech.VoiceList},
        query=("model",),
    ),
    Operation(
        "POST",
        "/v1/images/generations",
        "Image generation (streamed with stream: true)",
        "OpenAI",
        images.ImageGenerationRequest,
        {JSON: images.ImagesResponse, SSE: (images.PartialImageEvent, images.CompletedEvent)},
        streamed=(SSE,),
    ),
    Operation(
        "POST",
        "/v1/images/edits",
        "Image edit (streamed with stream: true)",
        "OpenAI",
        Multipart(images.ImageEditFields, ("image", "mask"), ("image",)),
        {JSON: images.ImagesResponse, SSE: (images.PartialImageEvent, images.CompletedEvent)},
        streamed=(SSE,),
    ),
    Operation(
        "GET",
        "/v1/images/files/{name}",
        "A generated image by its URL (response_format url; the URL is the capability)",
        "OpenAI",
        answers={"image/png": BINARY},
        public=True,
    ),
    Operation("GET", "/v1/models", "Every model", "OpenAI", answers={JSON: openai.ModelList}),
    Operation(
        "GET",
        "/v1/models/{model:path}",
        "One model, by name or alias",
        "OpenAI",
        answers={JSON: openai.ModelCard},
    ),
    *SERVICE_OPERATIONS,
)

_CONVERTER = re.compile(r"{([^}:]+):[^}]+}")


def openapi_path(starlette_path: str) -> str:
    """``/v1/models/{model:path}`` -> ``/v1/models/{model}``."""
    return _CONVERTER.sub(r"{\1}", starlette_path)


def build_document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    types: list[Any] = []
    for op in operations:
        if isinstance(op.body, Multipart):
            types.append(op.body.fields)
        elif op.body is not None:
            types.append(op.body)
        for kind in op.answers.values():
            if isinstance(kind, tuple):
                types += kind
            elif not isinstance(kind, dict):
                types.append(kind)
        types.append(op.error)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = iter(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        body: dict[str, Any] | None = None
        if isinstance(op.body, Multipart):
            body = _multipart(op.body, next(schema_of), components)
        elif op.body is not None:
            body = {"required": True, "content": {JSON: {"schema": next(schema_of)}}}
        content = {}
        for media, kind in op.answers.items():
            if isinstance(kind, dict):
                schema = kind
            elif isinstance(kind, tuple):
                schema = {"anyOf": [next(schema_of) for _ in kind]}
            else:
                schema = next(schema_of)
            entry: dict[str, Any] = {"schema": schema}
            if media in op.streamed:
                entry["schema"] = {**schema, "description": f"{STREAM_NOTE} (then [DONE])."}
            content[media] = entry
        error = next(schema_of)
        path = openapi_path(op.path)
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _operation_id(op.method, path),
            "responses": {
                op.status: {"description": "Success", "content": content},
                "default": {"description": "An error", "content": {JSON: {"schema": error}}},
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": TEXT}
            for name in re.findall(r"{([^}]+)}", path)
        ]
        parameters += [{"name": q, "in": "query", "schema": TEXT} for q in op.query]
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = body
        if op.public:
            operation["security"] = []
        paths.setdefault(path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlx-gateway",
            "version": _version(),
            "description": "Many MLX models behind the OpenAI (and Anthropic Messages) HTTP API.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        # Keys are needed only when the gateway is configured with api_keys.
        "security": [{"bearer": []}, {"x-api-key": []}, {}],
    }


def undocumented(routes: list[BaseRoute], document: dict[str, Any]) -> list[str]:
    """``METHOD path`` of each of the app's routes the document does not describe."""
    missing = []
    for route in routes:
        if not isinstance(route, Route):
            continue
        documented = document["paths"].get(openapi_path(route.path), {})
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if method.lower() not in documented:
                missing.append(f"{method} {route.path}")
    return missing


async def openapi_json(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = msgspec.json.encode(build_document())
    return Response(state.openapi, media_type=JSON)


def _multipart(form: Multipart, fields: dict[str, Any], components: dict[str, Any]) -> Any:
    name = fields["$ref"].rsplit("/", 1)[-1]
    schema = components[name]
    properties = {**schema.get("properties", {})}
    properties.update({f: {**BINARY, "description": f"the {f} file"} for f in form.files})
    required = [*schema.get("required", []), *form.required_files]
    multipart = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"multipart/form-data": {"schema": multipart}}}


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method.lower()}_{words}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlx-gateway")
    except PackageNotFoundError:
        return "0.1.0"
