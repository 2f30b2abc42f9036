"""The Response built from a job's pieces, and its streaming events, against the spec."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import APIError
from gateway.responses_events import ResponseBuilder, encode_event
from gateway.responses_input import decode_reasoning
from gateway.responses_objects import Response, TextOut
from gateway.responses_schemas import TextTextFormat
from gateway.text_pieces import Piece
from protocol.messages import Finished, TokenLogprob, ToolCall, Usage
from tests.responses_spec import sse_events, validate_event, validate_response


def skeleton(**fields: Any) -> Response:
    base: dict[str, Any] = dict(
        id="resp_1",
        created_at=1,
        status="in_progress",
        model="m",
        previous_response_id=None,
        instructions=None,
        tools=[],
        tool_choice="auto",
        parallel_tool_calls=True,
        max_tool_calls=None,
        truncation="disabled",
        text=TextOut(TextTextFormat()),
        reasoning=None,
        temperature=1.0,
        top_p=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        top_logprobs=0,
        max_output_tokens=None,
        store=True,
        background=False,
        metadata={},
        prompt_cache_key=None,
        safety_identifier=None,
        user=None,
    )
    return Response(**{**base, **fields})


def piece(text: str = "", reasoning: str = "", calls: list[ToolCall] | None = None) -> Piece:
    return Piece(text, None, None, reasoning, calls or [])


def done(reason: str = "stop", completion: int = 5, reasoning: int = 0) -> Finished:
    return Finished("j", reason, Usage(7, completion, 3, reasoning))  # type: ignore[arg-type]


def run(builder: ResponseBuilder, pieces: list[Piece], end: Finished | APIError) -> list[dict]:
    """Every event, as JSON data, after checking each against the spec and its SSE line."""
    events = builder.start()
    for p in pieces:
        events += builder.feed(p)
    events += builder.finish(end) if isinstance(end, Finished) else builder.fail(end)
    decoded = sse_events(b"".join(encode_event(e) for e in events).decode())
    for name, data in decoded:
        validate_event(data, name)
    assert [data["sequence_number"] for _, data in decoded] == list(range(len(decoded)))
    validate_response(msgspec.to_builtins(builder.response))
    return [data for _, data in decoded]


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_a_text_answer_streams_the_spec_events_in_order() -> None:
    builder = ResponseBuilder(skeleton())
    events = run(builder, [piece("Hel"), piece("lo")], done())
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["completed_at"] is not None
    (message,) = final["output"]
    assert message["type"] == "message" and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert final["usage"] == {
        "input_tokens": 7,
        "output_tokens": 5,
        "total_tokens": 12,
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert (
        events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    )


def test_reasoning_comes_first_as_its_own_item_and_its_content_round_trips() -> None:
    builder = ResponseBuilder(skeleton(), encrypted_reasoning=True)
    events = run(
        builder, [piece(reasoning="think"), piece("answer", reasoning=" more")], done(reasoning=2)
    )
    assert types(events)[2:8] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think more"}]
    assert decode_reasoning(reasoning["encrypted_content"], "x") == "think more"
    assert message["content"][0]["text"] == "answer"
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 2


def test_encrypted_content_only_when_included() -> None:
    events = run(ResponseBuilder(skeleton()), [piece(reasoning="r")], done())
    assert events[-1]["response"]["output"][0]["encrypted_content"] is None


def test_whitespace_before_a_call_is_no_message_and_the_call_streams_its_arguments() -> None:
    builder = ResponseBuilder(skeleton(), namespaces={"exec": "shell"})
    calls = [ToolCall("call_1", "exec", '{"cmd"'), ToolCall("call_1", "exec", ': "ls"}')]
    events = run(
        builder, [piece("\n "), piece(calls=calls[:1]), piece(calls=calls[1:])], done("tool_calls")
    )
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = events[-1]["response"]["output"]
    assert call == {
        "type": "function_call",
        "id": call["id"],
        "call_id": "call_1",
        "name": "exec",
        "arguments": '{"cmd": "ls"}',
        "status": "completed",
        "namespace": "shell",
    }
    assert events[2]["item"]["status"] == "in_progress" and events[2]["item"]["arguments"] == ""
    assert events[5]["arguments"] == '{"cmd": "ls"}' and events[5]["name"] == "exec"


def test_text_then_calls_and_max_calls_keeps_the_first() -> None:
    builder = ResponseBuilder(skeleton(), max_calls=1)
    calls = [ToolCall("call_1", "a", "{}"), ToolCall("call_2", "b", "{}")]
    events = run(builder, [piece("Let me see."), piece(calls=calls)], done("tool_calls"))
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[1]["name"] == "a"


def test_max_output_tokens_reached_is_incomplete() -> None:
    events = run(ResponseBuilder(skeleton()), [piece("cut")], done("length"))
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_nothing_generated_is_one_empty_message() -> None:
    events = run(ResponseBuilder(skeleton()), [], done(completion=1))
    (message,) = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == ""


def test_an_error_mid_stream_is_an_error_event_then_response_failed() -> None:
    error = APIError(503, "the worker died", code="worker_died")
    events = run(ResponseBuilder(skeleton()), [piece("partial")], error)
    assert types(events)[-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert events[-2]["error"]["code"] == "worker_died"
    assert events[-2]["message"] == "the worker died"  # OpenAI's flat fields too
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "worker_died", "message": "the worker died"}
    assert failed["output"][0]["status"] == "incomplete"


def test_logprobs_ride_on_the_text_deltas_when_asked() -> None:
    token = TokenLogprob("hi", -0.5, [104, 105], [])
    builder = ResponseBuilder(skeleton(), logprobs=True)
    events = run(builder, [Piece("hi", [token], None)], done())
    (delta,) = [e for e in events if e["type"] == "response.output_text.delta"]
    assert delta["logprobs"] == [
        {"token": "hi", "logprob": -0.5, "bytes": [104, 105], "top_logprobs": []}
    ]
    part = events[-1]["response"]["output"][0]["content"][0]
    assert part["logprobs"] == delta["logprobs"]
