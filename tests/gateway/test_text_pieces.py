"""gateway/text_pieces.py: a text job's batches as pieces, several jobs merged by
choice, and whole outputs collected."""

from __future__ import annotations

import pytest

from gateway.errors import APIError
from gateway.job_stream import JobOutput, JobStream
from gateway.text_pieces import Piece, collect, merge_calls, merged_pieces, piece_of, pieces
from protocol.messages import Delta, Finished, JobFailed, TokenLogprob, ToolCall, Usage

RELEASED: list[str] = []


def job_stream(job_id: str, *events: JobOutput | JobFailed) -> JobStream:
    stream = JobStream(job_id, 600.0, lambda s: RELEASED.append(s.id))
    for event in events:
        stream.put(event)
    return stream


def logprob(token: str) -> TokenLogprob:
    return TokenLogprob(token, -0.5, list(token.encode()))


def test_a_piece_joins_its_batch() -> None:
    end = Finished("j", "stop", Usage(2, 3), text="c", logprobs=[logprob("c")], reasoning="r2")
    batch: list[JobOutput] = [
        Delta("j", "a", 1, [logprob("a")], reasoning="r1", tool_calls=[ToolCall("c1", "f", "{")]),
        Delta("j", "b", 1, [logprob("b")]),
        end,
    ]
    piece = piece_of(batch)
    assert (piece.text, piece.reasoning, piece.finished) == ("abc", "r1r2", end)
    assert [t.token for t in piece.logprobs or ()] == ["a", "b", "c"]
    assert piece.tool_calls == [ToolCall("c1", "f", "{")]


def test_a_piece_has_no_logprobs_unless_the_job_sends_them() -> None:
    assert piece_of([Delta("j", "a", 1)]).logprobs is None


async def test_pieces_come_one_per_batch_the_last_with_finished() -> None:
    end = Finished("j", "length", Usage(1, 2))
    stream = job_stream("j", Delta("j", "a", 1))
    read = pieces(stream)
    assert await anext(read) == Piece("a", None, None)
    stream.put(Delta("j", "b", 1))
    stream.put(end)
    assert [piece async for piece in read] == [Piece("b", None, end)]


async def test_merged_pieces_are_tagged_with_their_choice_until_all_finish() -> None:
    ends = [Finished(f"j{i}", "stop", Usage(1, 1)) for i in range(2)]
    streams = [
        job_stream("j0", Delta("j0", "a", 1), ends[0]),
        job_stream("j1", Delta("j1", "b", 1), ends[1]),
    ]
    merged = [(i, p.text, p.finished) async for i, p in merged_pieces(streams)]
    assert sorted(merged, key=lambda m: m[0]) == [(0, "a", ends[0]), (1, "b", ends[1])]


async def test_one_failed_choice_fails_the_request_and_releases_the_others() -> None:
    failed = job_stream("bad", JobFailed("bad", 503, "worker_died", "gone"))
    waiting = job_stream("waiting")  # would never end
    with pytest.raises(APIError) as caught:
        async for _ in merged_pieces([waiting, failed]):
            pass
    assert caught.value.status == 503
    assert {"bad", "waiting"} <= set(RELEASED)


async def test_collect_gives_each_choices_whole_output_in_order() -> None:
    ends = [
        Finished("j0", "stop", Usage(1, 2), text="!"),
        Finished("j1", "tool_calls", Usage(1, 4)),
    ]
    streams = [
        job_stream("j0", Delta("j0", "hel", 1), Delta("j0", "lo", 1), ends[0]),
        job_stream(
            "j1",
            Delta("j1", "", 1, tool_calls=[ToolCall("c", "f", '{"a"')]),
            Delta("j1", "", 1, tool_calls=[ToolCall("c", "", ": 1}")]),
            ends[1],
        ),
    ]
    first, second = await collect(streams)
    assert (first.text, first.finished, first.tool_calls) == ("hello!", ends[0], [])
    assert (second.finished, second.tool_calls) == (ends[1], [ToolCall("c", "f", '{"a": 1}')])


def test_a_call_piece_with_a_known_id_continues_that_call() -> None:
    calls = [
        ToolCall("c1", "f", '{"x": '),
        ToolCall("c2", "g", "{}"),
        ToolCall("c1", "", "1}"),
    ]
    assert merge_calls(calls) == [ToolCall("c1", "f", '{"x": 1}'), ToolCall("c2", "g", "{}")]
    assert calls[0].arguments == '{"x": '  # the pieces themselves are left as they were
