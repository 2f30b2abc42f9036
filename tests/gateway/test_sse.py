"""gateway/sse.py: the one SSE encoder, and a stream whose errors end it as an event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgspec
from starlette.responses import StreamingResponse

from gateway.errors import APIError
from gateway.sse import DONE, sse_event, sse_response


class Hello(msgspec.Struct):
    text: str


async def body(response: StreamingResponse) -> list[bytes]:
    return [bytes(chunk) async for chunk in response.body_iterator]


def test_an_event_is_a_data_line_of_json() -> None:
    assert sse_event(Hello("hi")) == b'data: {"text":"hi"}\n\n'


def test_a_named_event_has_an_event_line_first() -> None:
    assert sse_event(Hello("hi"), "greeting") == b'event: greeting\ndata: {"text":"hi"}\n\n'


def test_done_is_openais_terminator() -> None:
    assert DONE == b"data: [DONE]\n\n"


async def test_the_response_streams_the_events_uncached() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield sse_event(Hello("a"))
        yield DONE

    response = sse_response(events())
    assert response.media_type == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert await body(response) == [b'data: {"text":"a"}\n\n', DONE]


async def test_an_error_mid_stream_is_its_last_event_in_openais_shape() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield sse_event(Hello("a"))
        raise APIError(503, "the worker died", code="worker_died")

    first, last = await body(sse_response(events()))
    assert first == b'data: {"text":"a"}\n\n'
    error = json.loads(last.removeprefix(b"data: "))["error"]
    assert (error["code"], error["message"]) == ("worker_died", "the worker died")


async def test_an_unexpected_error_mid_stream_is_a_500_event() -> None:
    async def events() -> AsyncIterator[bytes]:
        raise KeyError("x")
        yield b""  # an async generator  # pragma: no cover

    (last,) = await body(sse_response(events()))
    error = json.loads(last.removeprefix(b"data: "))["error"]
    assert error["type"] == "server_error" and "KeyError" in error["message"]


async def test_an_api_can_shape_its_own_error_event() -> None:
    async def events() -> AsyncIterator[bytes]:
        raise APIError(429, "busy")
        yield b""  # an async generator  # pragma: no cover

    def named(exc: APIError) -> bytes:
        return sse_event(Hello(f"{exc.status} {exc.message}"), "error")

    assert await body(sse_response(events(), named)) == [
        b'event: error\ndata: {"text":"429 busy"}\n\n'
    ]
