"""A Transcript in OpenAI's response formats: exact SRT/WebVTT text, JSON shapes."""

from __future__ import annotations

import msgspec

from gateway.transcript_formats import as_json, as_srt, as_text, as_verbose_json, as_vtt
from protocol.messages import Segment, Transcript, Word

TRANSCRIPT = Transcript(
    id="j",
    text=" Hello world. Bye.",
    language="english",
    duration=3725.25,
    segments=[
        Segment(0, 0.0, 1.5, " Hello world.", [1, 2], words=[Word(" Hello", 0.0, 0.6)]),
        Segment(1, 1.5, 2.0, "", []),  # blanked by Whisper: no cue
        Segment(2, 3661.0, 3725.25, " Bye\nnow --> later.", [3], seek=366100),
    ],
)


def test_srt_numbers_cues_with_comma_milliseconds_and_hours() -> None:
    assert as_srt(TRANSCRIPT) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello world.\n\n"
        "2\n01:01:01,000 --> 01:02:05,250\nBye now -> later.\n\n"
    )


def test_vtt_has_a_header_and_dot_milliseconds() -> None:
    assert as_vtt(TRANSCRIPT) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHello world.\n\n"
        "01:01:01.000 --> 01:02:05.250\nBye now -> later.\n\n"
    )


def test_text_is_stripped_with_a_final_newline() -> None:
    assert as_text(TRANSCRIPT) == "Hello world. Bye.\n"


def test_json_usage_is_whole_seconds_rounded_up() -> None:
    assert msgspec.to_builtins(as_json(TRANSCRIPT)) == {
        "text": "Hello world. Bye.",
        "usage": {"seconds": 3726, "type": "duration"},
    }


def test_verbose_json_has_openais_fields() -> None:
    reply = msgspec.to_builtins(as_verbose_json(TRANSCRIPT, "transcribe", words=True))
    assert reply["task"] == "transcribe" and reply["language"] == "english"
    assert reply["duration"] == 3725.25
    assert reply["segments"][2] == {
        "id": 2,
        "seek": 366100,
        "start": 3661.0,
        "end": 3725.25,
        "text": " Bye\nnow --> later.",
        "tokens": [3],
        "temperature": 0.0,
        "avg_logprob": 0.0,
        "compression_ratio": 0.0,
        "no_speech_prob": 0.0,
    }
    assert reply["words"] == [{"word": "Hello", "start": 0.0, "end": 0.6}]


def test_verbose_json_leaves_out_what_was_not_asked() -> None:
    reply = msgspec.to_builtins(as_verbose_json(TRANSCRIPT, "translate", segments=False))
    assert "segments" not in reply and "words" not in reply
    assert reply["language"] == "english" and reply["task"] == "translate"
