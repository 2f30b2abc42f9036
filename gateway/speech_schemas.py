"""OpenAI Audio speech shapes (``/v1/audio/speech``, ``/v1/audio/voices``) and
this server's extensions (``include_visemes``, ``stream: false``), as msgspec Structs."""

from __future__ import annotations

from typing import Literal

import msgspec


class SpeechRequest(msgspec.Struct):
    model: str
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = None
    # Extensions.
    stream: bool = True
    include_visemes: bool = False


# --- responses -----------------------------------------------------------------


class PhonemeOut(msgspec.Struct):
    phoneme: str
    start: float
    end: float


class VisemeOut(msgspec.Struct):
    viseme: str
    azure_id: int
    start: float
    end: float


class WordOut(msgspec.Struct):
    word: str
    start: float
    end: float


class SpeechUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechWithVisemes(msgspec.Struct):
    audio: str
    format: str
    sample_rate: int
    duration: float
    phonemes: list[PhonemeOut]
    visemes: list[VisemeOut]
    words: list[WordOut]
    usage: SpeechUsage


class AudioDelta(msgspec.Struct, tag_field="type", tag="speech.audio.delta"):
    audio: str


class AudioDone(msgspec.Struct, tag_field="type", tag="speech.audio.done"):
    usage: SpeechUsage


class VisemesEvent(msgspec.Struct, tag_field="type", tag="speech.visemes"):
    start: float
    end: float
    phonemes: list[PhonemeOut]
    visemes: list[VisemeOut]
    words: list[WordOut]


class VoiceCard(msgspec.Struct):
    id: str
    model: str
    object: str = "voice"


class VoiceList(msgspec.Struct):
    data: list[VoiceCard]
    object: str = "list"
