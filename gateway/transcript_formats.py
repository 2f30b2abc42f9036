"""A worker's :class:`~protocol.messages.Transcript` in OpenAI's five
``response_format``s: ``json``, ``verbose_json`` (the Structs of
:mod:`gateway.transcription_schemas`), and ``text``, ``srt``, ``vtt`` (plain text).

As OpenAI does, texts are stripped of Whisper's leading space, and usage is
the audio's duration in whole seconds, rounded up.
"""

from __future__ import annotations

import math

from gateway.transcription_schemas import (
    DurationUsage,
    Task,
    TranscriptionJSON,
    TranscriptionVerboseJSON,
    VerboseSegment,
    VerboseWord,
)
from protocol.messages import Segment, Transcript


def usage(transcript: Transcript) -> DurationUsage:
    return DurationUsage(math.ceil(transcript.duration))


def as_json(transcript: Transcript) -> TranscriptionJSON:
    return TranscriptionJSON(transcript.text.strip(), usage(transcript))


def as_verbose_json(
    transcript: Transcript,
    task: Task,
    *,
    segments: bool = True,
    words: bool = False,
) -> TranscriptionVerboseJSON:
    return TranscriptionVerboseJSON(
        task=task,
        # A translation's language is its output's (OpenAI: always english).
        language="english" if task == "translate" else transcript.language,
        duration=transcript.duration,
        text=transcript.text.strip(),
        usage=usage(transcript),
        segments=[_verbose_segment(s) for s in transcript.segments] if segments else None,
        words=_words(transcript) if words else None,
    )


def _words(transcript: Transcript) -> list[VerboseWord]:
    words = [w for s in transcript.segments for w in s.words]
    return [VerboseWord(w.word.strip(), w.start, w.end) for w in words]


def _verbose_segment(s: Segment) -> VerboseSegment:
    return VerboseSegment(
        s.id,
        s.seek,
        s.start,
        s.end,
        s.text,
        s.tokens,
        s.temperature,
        s.avg_logprob,
        s.compression_ratio,
        s.no_speech_prob,
    )


def as_text(transcript: Transcript) -> str:
    return transcript.text.strip() + "\n"


def as_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "".join(
        f"{number}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{text}\n\n"
        for number, (s, text) in enumerate(_cues(transcript), start=1)
    )


def as_vtt(transcript: Transcript) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    cues = "".join(
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{text}\n\n"
        for s, text in _cues(transcript)
    )
    return "WEBVTT\n\n" + cues


def _cues(transcript: Transcript) -> list[tuple[Segment, str]]:
    """Segments with text (Whisper blanks the ones it judged empty or
    instantaneous), each on one line: a blank line would end the cue, and
    WebVTT forbids "-->" in cue text."""
    cues = []
    for s in transcript.segments:
        text = " ".join(s.text.split())
        if text:
            cues.append((s, text.replace("-->", "->")))
    return cues


def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(max(seconds, 0.0) * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"
