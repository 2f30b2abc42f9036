"""Protocol round trips and rejection of bad frames."""

from __future__ import annotations

import msgspec
import pytest

from protocol.framing import (
    PROTOCOL_VERSION,
    Encoder,
    FrameError,
    from_worker_decoder,
    status_decoder,
    to_worker_decoder,
)
from protocol.messages import (
    AudioChunk,
    Cancel,
    ChatJob,
    ChatMessage,
    CompletionJob,
    Delta,
    EmbeddingJob,
    Embeddings,
    Events,
    Finished,
    GeneratedImage,
    Goodbye,
    ImageJob,
    JobFailed,
    Ping,
    Pong,
    Progress,
    SamplingParams,
    Segment,
    SpeechJob,
    SupervisorStatus,
    Timed,
    Transcript,
    TranscriptionJob,
    Usage,
    Word,
    WorkerStats,
)

TO_WORKER = [
    ChatJob(
        "j1",
        [ChatMessage("system", "be brief"), ChatMessage("user", "hi", name="ann")],
        SamplingParams(max_tokens=5, temperature=0.0, top_p=0.9, seed=3, stop=["\n"]),
    ),
    ChatJob(
        "j4",
        [
            ChatMessage(
                "user", "what is it?", images=[b"\x89PNG\r\n\x1a\n\x00\xff", b"\xff\xd8\xff"]
            )
        ],
        SamplingParams(),
    ),
    CompletionJob("j2", "Once upon", SamplingParams()),
    CompletionJob("j3", [1, 2, 3], SamplingParams(max_tokens=1)),
    SpeechJob("s1", "Hello there.", "af_bella(2)+af_sky(1)", speed=1.2, timings=True),
    TranscriptionJob("t1", b"RIFF....WAVE", task="translate", language="en", word_timestamps=True),
    EmbeddingJob("e1", ["a", "b"], dimensions=64),
    EmbeddingJob("e2", [[1, 2], [3]]),
    ImageJob("i1", "a cat", 64, 64, n=2, seed=1, steps=2, image=b"\x89PNG", strength=0.6),
    Cancel("j1"),
    Ping(7),
]

FROM_WORKER = [
    Events(
        deltas=[Delta("j1", "héllo 😀", 2)],
        finished=[Finished("j2", "length", Usage(3, 16), text="tail")],
        failed=[JobFailed("j3", 400, "context_length_exceeded", "too long")],
    ),
    Events(),
    Events(
        outputs=[
            AudioChunk(
                "s1", b"\x00\x01", 24000, 0.5, [Timed("h", 0.5, 0.55)], [Timed("Hi", 0.5, 0.6)]
            ),
            Transcript(
                "t1",
                "hi",
                "en",
                1.5,
                [Segment(0, 0.0, 1.5, "hi", words=[Word("hi", 0.1, 0.4, 0.9)])],
            ),
            Embeddings("e1", 2, [b"\x00\x00\x80\x3f" * 2]),
            GeneratedImage("i1", 1, b"\x89PNG", seed=2),
            Progress("i1", 1, 2, preview_png=None),
        ],
        finished=[Finished("s1", "stop", Usage(12, 0))],
    ),
    Pong(1, "123-abc", 123, "m", "llm", "ready", 99, WorkerStats(active=2), error=None),
    Goodbye("123-abc"),
]


@pytest.mark.parametrize("message", TO_WORKER, ids=lambda m: type(m).__name__)
def test_gateway_to_worker_messages_round_trip(message: msgspec.Struct) -> None:
    assert to_worker_decoder().decode(Encoder().encode(message)) == message


@pytest.mark.parametrize("message", FROM_WORKER, ids=lambda m: type(m).__name__)
def test_worker_to_gateway_messages_round_trip(message: msgspec.Struct) -> None:
    assert from_worker_decoder().decode(Encoder().encode(message)) == message


def test_supervisor_status_round_trips() -> None:
    status = SupervisorStatus("m", "restarting", None, 3, "model process exited with code 70")
    assert status_decoder().decode(Encoder().encode(status)) == status


def test_frames_carry_the_protocol_version_first() -> None:
    assert Encoder().encode(Ping(1))[0] == PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"", "empty"),
        (
            bytes([PROTOCOL_VERSION + 1]) + msgspec.msgpack.encode({"type": "ping", "seq": 1}),
            "version",
        ),
        (bytes([PROTOCOL_VERSION]) + b"\xc1", "MessagePack data is malformed"),
        (bytes([PROTOCOL_VERSION]) + msgspec.msgpack.encode({"type": "shutdown"}), "type"),
        (bytes([PROTOCOL_VERSION]) + msgspec.msgpack.encode({"type": "ping", "seq": "x"}), "seq"),
        (bytes([PROTOCOL_VERSION]) + msgspec.msgpack.encode({"type": "cancel"}), "id"),
    ],
)
def test_bad_frames_raise_frame_error_naming_the_problem(frame: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        to_worker_decoder().decode(frame)


def test_a_message_for_the_other_direction_is_rejected() -> None:
    frame = Encoder().encode(Pong(1, "i", 1, "m", "llm", "ready", 0, WorkerStats()))
    with pytest.raises(FrameError):
        to_worker_decoder().decode(frame)


def test_fields_added_later_with_defaults_stay_compatible() -> None:
    """Schema evolution: an older peer's frame (fewer fields) still decodes."""
    old = bytes([PROTOCOL_VERSION]) + msgspec.msgpack.encode(
        {"type": "chat", "id": "j", "messages": [{"role": "user"}], "params": {}}
    )
    job = to_worker_decoder().decode(old)
    assert isinstance(job, ChatJob) and job.params == SamplingParams()
