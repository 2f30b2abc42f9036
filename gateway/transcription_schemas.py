"""OpenAI Audio transcription and translation shapes (``/v1/audio/transcriptions``,
``/v1/audio/translations``).

The request is a multipart form (read field by field in
:mod:`gateway.transcriptions`); these are its vocabularies and the JSON
answers (``json``, ``verbose_json``) as msgspec Structs.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Task = Literal["transcribe", "translate"]
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")  # timestamp_granularities[]


class DurationUsage(msgspec.Struct):
    seconds: int
    type: Literal["duration"] = "duration"


class TranscriptionJSON(msgspec.Struct):
    text: str
    usage: DurationUsage


class VerboseSegment(msgspec.Struct):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseWord(msgspec.Struct):
    word: str
    start: float
    end: float


class TranscriptionVerboseJSON(msgspec.Struct, omit_defaults=True):
    task: Task
    language: str
    duration: float
    text: str
    usage: DurationUsage
    # Present when asked for (timestamp_granularities): segments by default.
    segments: list[VerboseSegment] | None = None
    words: list[VerboseWord] | None = None


class TranscriptionFields(msgspec.Struct, kw_only=True):
    """The form's text fields, beside its ``file``: read one by one by
    :mod:`gateway.transcriptions`; this describes them (``/openapi.json``)."""

    model: str
    language: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = 0.0
    timestamp_granularities: list[Literal["word", "segment"]] = msgspec.field(
        default_factory=list, name="timestamp_granularities[]"
    )
