"""Validation against the Open Responses specification's own types
(``openresponses-types``, pydantic models generated from its OpenAPI file),
strictly, from the JSON as sent. Used by the unit and the end-to-end tests.

Two places where the package (2.4.0, spec of 2026-04-24) lags the spec it
was generated from, and the JSON is adjusted before validating:

- the reasoning text events were renamed ``response.reasoning_text.delta``
  / ``.done`` (OpenAI's names) in the spec's schema; the package still has
  ``response.reasoning.delta`` / ``.done`` for the same shapes;
- its ``JsonSchemaResponseFormat`` (the ``text.format`` echo) types
  ``schema`` as null only, where the spec says an object or null.
"""

from __future__ import annotations

import json
from typing import Any

import openresponses_types as spec
from pydantic import BaseModel

EVENTS: dict[str, type[BaseModel]] = {
    "response.created": spec.ResponseCreatedStreamingEvent,
    "response.queued": spec.ResponseQueuedStreamingEvent,
    "response.in_progress": spec.ResponseInProgressStreamingEvent,
    "response.completed": spec.ResponseCompletedStreamingEvent,
    "response.incomplete": spec.ResponseIncompleteStreamingEvent,
    "response.failed": spec.ResponseFailedStreamingEvent,
    "response.output_item.added": spec.ResponseOutputItemAddedStreamingEvent,
    "response.output_item.done": spec.ResponseOutputItemDoneStreamingEvent,
    "response.content_part.added": spec.ResponseContentPartAddedStreamingEvent,
    "response.content_part.done": spec.ResponseContentPartDoneStreamingEvent,
    "response.output_text.delta": spec.ResponseOutputTextDeltaStreamingEvent,
    "response.output_text.done": spec.ResponseOutputTextDoneStreamingEvent,
    "response.reasoning_text.delta": spec.ResponseReasoningDeltaStreamingEvent,
    "response.reasoning_text.done": spec.ResponseReasoningDoneStreamingEvent,
    "response.function_call_arguments.delta": spec.ResponseFunctionCallArgumentsDeltaStreamingEvent,
    "response.function_call_arguments.done": spec.ResponseFunctionCallArgumentsDoneStreamingEvent,
    "error": spec.ErrorStreamingEvent,
}
_RENAMED = {
    "response.reasoning_text.delta": "response.reasoning.delta",
    "response.reasoning_text.done": "response.reasoning.done",
}


def _as_packaged_response(response: dict[str, Any]) -> dict[str, Any]:
    text_format = response.get("text", {}).get("format", {})
    if text_format.get("type") == "json_schema":
        response = {**response, "text": {**response["text"], "format": {**text_format}}}
        response["text"]["format"]["schema"] = None
    return response


def validate_response(response: dict[str, Any]) -> None:
    """Raise unless ``response`` (a Response object as JSON data) is the spec's."""
    data = json.dumps(_as_packaged_response(response))
    spec.ResponseResource.model_validate_json(data, strict=True)


def validate_event(event: dict[str, Any], name: str | None = None) -> None:
    """Raise unless ``event`` is one of the spec's streaming events; ``name``
    (the SSE ``event:`` line), when given, must be its type."""
    kind = event["type"]
    assert name is None or name == kind, (name, kind)
    model = EVENTS[kind]
    data = {**event, "type": _RENAMED.get(kind, kind)}
    if "response" in data:
        data["response"] = _as_packaged_response(data["response"])
    model.model_validate_json(json.dumps(data), strict=True)


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(the ``event:`` name, the data) of each event of an SSE body."""
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events
