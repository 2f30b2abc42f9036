"""The Whisper engine in-process on the demo model: decoding, shapes, errors, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from protocol.messages import ChatJob, Events, SamplingParams, Transcript, TranscriptionJob
from tests.workers.engine_helpers import loaded
from workers.engine import JobError
from workers.engines.whisper import WhisperEngine
from workers.engines.whisper_audio import AudioDecodeError, decode_audio

# The demo decoder is random: stop each window early, and decode each once.
DEMO_OPTIONS = {"sample_len": 8, "temperature_fallback": False, "language": "en"}


@pytest.fixture(scope="module")
def engine(demo_whisper: Path) -> WhisperEngine:
    return loaded(WhisperEngine, "whisper", "demo-whisper-tiny", demo_whisper, **DEMO_OPTIONS)


def run(engine: WhisperEngine, *jobs: TranscriptionJob) -> Events:
    """Submit and step to the end; every step's events, merged."""
    for job in jobs:
        engine.submit(job)
    merged = Events(deltas=[], finished=[], failed=[], outputs=[])
    while engine.has_work():
        events = engine.step(0.02)
        merged.outputs += events.outputs
        merged.finished += events.finished
        merged.failed += events.failed
    return merged


def test_ffmpeg_decodes_every_format_to_16khz_mono(speech: dict[str, bytes]) -> None:
    lengths = {ext: decode_audio(data).size for ext, data in speech.items()}
    wav = lengths["wav"]
    assert 0.5 * 16_000 < wav < 3 * 16_000
    for ext, n in lengths.items():  # MP3 adds encoder padding
        assert abs(n - wav) < 0.1 * 16_000, ext


def test_unreadable_bytes_name_the_file_and_ffmpegs_reason() -> None:
    with pytest.raises(AudioDecodeError, match=r"'x\.bin' as audio: Invalid data"):
        decode_audio(b"\x00not audio" * 50, "x.bin")


def test_a_transcript_has_timed_segments_within_the_audio(
    engine: WhisperEngine, speech: dict[str, bytes]
) -> None:
    events = run(engine, TranscriptionJob("t1", speech["wav"], filename="hello.wav"))
    (transcript,) = events.outputs
    assert isinstance(transcript, Transcript)
    (done,) = events.finished
    assert done.id == "t1" and done.finish_reason == "stop"
    assert transcript.language == "english" and 0.5 < transcript.duration < 3
    assert transcript.segments
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end <= transcript.duration
    assert done.usage.completion_tokens == sum(len(s.tokens) for s in transcript.segments)


def test_word_timestamps_are_in_order_within_the_audio(
    engine: WhisperEngine, speech: dict[str, bytes]
) -> None:
    job = TranscriptionJob("w1", speech["mp3"], word_timestamps=True)
    (transcript,) = run(engine, job).outputs
    assert isinstance(transcript, Transcript)
    words = [w for s in transcript.segments for w in s.words]
    assert words
    for w in words:
        assert 0 <= w.start <= w.end <= transcript.duration
    starts = [w.start for w in words]
    assert starts == sorted(starts)


def test_bad_audio_fails_with_400_while_others_run(
    engine: WhisperEngine, speech: dict[str, bytes]
) -> None:
    events = run(
        engine,
        TranscriptionJob("ok", speech["ogg"]),
        TranscriptionJob("bad", b"garbage" * 100, filename="notes.txt"),
    )
    (failed,) = events.failed
    assert (failed.id, failed.status, failed.param) == ("bad", 400, "file")
    assert "notes.txt" in failed.message
    assert [o.id for o in events.outputs] == ["ok"]


def test_a_host_without_ffmpeg_answers_503_naming_the_model(
    engine: WhisperEngine, speech: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workers.engines.whisper_audio.shutil.which", lambda _: None)
    (failed,) = run(engine, TranscriptionJob("n", speech["wav"])).failed
    assert (failed.status, failed.code) == (503, "audio_decoder_missing")
    assert "'demo-whisper-tiny'" in failed.message and "ffmpeg is not installed" in failed.message


@pytest.mark.parametrize(
    ("job", "param"),
    [
        (TranscriptionJob("l", b"x", language="klingon"), "language"),
        (TranscriptionJob("t", b"x", temperature=1.5), "temperature"),
        (ChatJob("c", [], SamplingParams()), "model"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    engine: WhisperEngine, job: TranscriptionJob | ChatJob, param: str
) -> None:
    with pytest.raises(JobError) as refused:
        engine.submit(job)
    assert refused.value.param == param and refused.value.status == 400


def test_language_names_are_accepted(engine: WhisperEngine, speech: dict[str, bytes]) -> None:
    (transcript,) = run(engine, TranscriptionJob("fr", speech["wav"], language="French")).outputs
    assert isinstance(transcript, Transcript) and transcript.language == "french"


def test_a_cancelled_job_reports_nothing(engine: WhisperEngine, speech: dict[str, bytes]) -> None:
    engine.submit(TranscriptionJob("c1", speech["wav"]))
    engine.submit(TranscriptionJob("c2", speech["wav"]))
    engine.step(0.001)
    assert engine.cancel("c1") and engine.cancel("c2")
    assert not engine.cancel("c3")
    events = run(engine)
    assert not events.outputs and not events.finished and not events.failed
    assert not engine.has_work()


def test_the_loop_stays_responsive_during_a_transcription(
    engine: WhisperEngine, speech: dict[str, bytes]
) -> None:
    engine.submit(TranscriptionJob("r1", speech["wav"]))
    longest = 0.0
    while engine.has_work():
        started = time.perf_counter()
        engine.step(0.02)
        longest = max(longest, time.perf_counter() - started)
    assert longest < 0.5


def test_the_transcript_survives_the_wire(engine: WhisperEngine, speech: dict[str, bytes]) -> None:
    (transcript,) = run(engine, TranscriptionJob("m", speech["wav"])).outputs
    encoded = msgspec.msgpack.encode(transcript)
    assert msgspec.msgpack.decode(encoded, type=Transcript) == transcript
