"""POST /v1/audio/speech and GET /v1/audio/voices (family "kokoro").

OpenAI's fields: ``model``, ``input``, ``voice`` (a Kokoro voice or a
weighted mix ``af_bella(2)+af_sky(1)``), ``speed`` (0.25-4),
``response_format`` (mp3 by default, as OpenAI's) and ``stream_format``:

- ``"audio"`` (default): the audio file's bytes, sent as each sentence is
  synthesised (chunked transfer);
- ``"sse"``: ``speech.audio.delta`` events (``audio``: base64 of the next
  bytes of the file) and a last ``speech.audio.done`` with ``usage``.

Extensions: ``stream: false`` sends the whole file at once (WAV then has
exact sizes in its header); ``include_visemes: true`` answers JSON
``{audio, format, sample_rate, duration, phonemes, visemes, words, usage}``,
or, with ``stream_format: "sse"``, adds a ``speech.visemes`` event before
each sentence's audio (times from the start of the stream). ``instructions``
is accepted and ignored (Kokoro takes no style prompt).

The first sentence is awaited before the response starts, so a refused job
(unknown voice, empty text) is a 400, not a broken stream.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.audio_encoding import (
    MEDIA_TYPES,
    EncodingError,
    close,
    encode_all,
    encoder,
    supported_formats,
)
from gateway.body import decode_json
from gateway.errors import APIError
from gateway.streaming import sse, sse_response
from gateway.visemes import Viseme, merged, visemes
from gateway.worker_client import JobStream, WorkerClient
from protocol.config import Family
from protocol.messages import AudioChunk, Finished, JobFailed, SpeechJob, Timed

SPEECH_FAMILIES: tuple[Family, ...] = ("kokoro",)
MAX_INPUT_CHARS = 4096  # OpenAI's limit


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


# --- the job's events -------------------------------------------------------------


@dataclass
class Speech:
    """A speech job's chunks as they come; ``usage`` once it finished."""

    stream: JobStream
    pending: list[AudioChunk] = field(default_factory=list)
    usage: SpeechUsage | None = None

    async def next_chunks(self) -> list[AudioChunk] | None:
        """The next chunks, or None at the end; a failure raises APIError."""
        chunks: list[AudioChunk] = self.pending
        self.pending = []
        if chunks:
            return chunks
        if self.usage is not None:
            return None
        while not chunks and self.usage is None:
            for event in await self.stream.next_batch():
                if isinstance(event, JobFailed):
                    raise APIError(event.status, event.message, code=event.code, param=event.param)
                if isinstance(event, AudioChunk):
                    chunks.append(event)
                elif isinstance(event, Finished):
                    used = event.usage
                    self.usage = SpeechUsage(
                        used.prompt_tokens,
                        used.completion_tokens,
                        used.prompt_tokens + used.completion_tokens,
                    )
        return chunks or None

    def close(self) -> None:
        self.stream.close()


async def speech(request: Request) -> Response:
    body = await decode_json(request, SpeechRequest)
    worker = request.app.state.registry.resolve(body.model, SPEECH_FAMILIES)
    _check(body)
    job = SpeechJob(
        worker.new_job_id(),
        body.input,
        body.voice,
        speed=body.speed,
        timings=body.include_visemes,
    )
    spoken = Speech(worker.submit(job))
    try:
        first = await spoken.next_chunks()  # a refused job fails here, before any byte
    except BaseException:
        spoken.close()
        raise
    spoken.pending = first or []
    if body.stream_format == "sse":
        return sse_response(_events(spoken, body))
    if body.include_visemes or not body.stream:
        try:
            return await _whole(spoken, body)
        finally:
            spoken.close()
    return StreamingResponse(_audio(spoken, body), media_type=MEDIA_TYPES[body.response_format])


def _check(body: SpeechRequest) -> None:
    formats = supported_formats()
    if body.response_format not in formats:
        raise APIError(
            400,
            f"response_format {body.response_format!r} is not supported; "
            f"supported: {', '.join(formats)}",
            param="response_format",
        )
    if not body.input.strip():
        raise APIError(400, "'input' is empty", param="input")
    if len(body.input) > MAX_INPUT_CHARS:
        raise APIError(
            400,
            f"'input' has {len(body.input)} characters; the limit is {MAX_INPUT_CHARS}",
            param="input",
        )
    if not body.voice.strip():
        raise APIError(400, "'voice' is empty", param="voice")
    if not 0.25 <= body.speed <= 4.0:
        raise APIError(400, "'speed' must be between 0.25 and 4.0", param="speed")


async def _encoded(spoken: Speech, fmt: str) -> AsyncGenerator[AudioChunk | bytes, None]:
    """The job's chunks as they arrive, each followed by what the encoder made
    of it so far (if anything), then the encoder's tail. Closing it (use
    ``aclosing``) cancels the job if unfinished and stops the encoder."""
    enc = None
    try:
        while (chunks := await spoken.next_chunks()) is not None:
            for chunk in chunks:
                if enc is None:
                    enc = await encoder(fmt, chunk.sample_rate, streaming=True)
                yield chunk
                if data := await enc.feed(chunk.pcm):
                    yield data
        if enc is not None and (data := await enc.finish()):
            yield data
    finally:
        spoken.close()
        if enc is not None:
            close(enc)


async def _audio(spoken: Speech, body: SpeechRequest) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(_encoded(spoken, body.response_format)) as items:
            async for item in items:
                if isinstance(item, bytes):
                    yield item
    except (APIError, EncodingError):
        return  # the headers are sent: ending the body early is all that is left


async def _events(spoken: Speech, body: SpeechRequest) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(_encoded(spoken, body.response_format)) as items:
            async for item in items:
                if isinstance(item, bytes):
                    yield sse(AudioDelta(base64.b64encode(item).decode()))
                elif body.include_visemes:
                    end = item.start + len(item.pcm) / 2 / item.sample_rate
                    yield sse(_visemes_event(item, end))
        assert spoken.usage is not None
        yield sse(AudioDone(spoken.usage))
    except EncodingError as exc:
        raise APIError(500, str(exc), code="encoding_failed") from exc


def _visemes_event(chunk: AudioChunk, end: float) -> VisemesEvent:
    return VisemesEvent(
        start=chunk.start,
        end=round(end, 6),
        phonemes=[PhonemeOut(p.label, p.start, p.end) for p in chunk.phonemes],
        visemes=_visemes_out(visemes(chunk.phonemes, chunk.start, round(end, 6))),
        words=[WordOut(w.label, w.start, w.end) for w in chunk.words],
    )


def _visemes_out(timeline: list[Viseme]) -> list[VisemeOut]:
    return [VisemeOut(v.viseme, v.azure_id, v.start, v.end) for v in timeline]


async def _whole(spoken: Speech, body: SpeechRequest) -> Response:
    pcm = bytearray()
    phonemes: list[Timed] = []
    words: list[Timed] = []
    timeline: list[Viseme] = []
    sample_rate = 24_000
    while (chunks := await spoken.next_chunks()) is not None:
        for chunk in chunks:
            pcm += chunk.pcm
            sample_rate = chunk.sample_rate
            phonemes += chunk.phonemes
            words += chunk.words
            end = round(chunk.start + len(chunk.pcm) / 2 / sample_rate, 6)
            timeline += visemes(chunk.phonemes, chunk.start, end)
    try:
        audio = await encode_all(body.response_format, bytes(pcm), sample_rate)
    except EncodingError as exc:
        raise APIError(500, str(exc), code="encoding_failed") from exc
    if not body.include_visemes:
        return Response(audio, media_type=MEDIA_TYPES[body.response_format])
    assert spoken.usage is not None
    reply = SpeechWithVisemes(
        audio=base64.b64encode(audio).decode(),
        format=body.response_format,
        sample_rate=sample_rate,
        duration=round(len(pcm) / 2 / sample_rate, 6),
        phonemes=[PhonemeOut(p.label, p.start, p.end) for p in phonemes],
        visemes=_visemes_out(merged(timeline)),
        words=[WordOut(w.label, w.start, w.end) for w in words],
        usage=spoken.usage,
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


# --- voices ---------------------------------------------------------------------


async def list_voices(request: Request) -> Response:
    """Every kokoro model's voices, or one model's with ``?model=``."""
    registry = request.app.state.registry
    name = request.query_params.get("model")
    if name is not None:
        workers = [registry.resolve(name, SPEECH_FAMILIES)]
    else:
        workers = [w for w in registry.workers.values() if w.model.family in SPEECH_FAMILIES]
    cards: list[VoiceCard] = []
    for worker in workers:
        if name is None and worker.state != "ready":
            continue  # listing everything: skip what cannot answer now
        cards += [VoiceCard(v, worker.model.name) for v in await _voices(worker)]
    return Response(msgspec.json.encode(VoiceList(cards)), media_type="application/json")


async def _voices(worker: WorkerClient) -> list[str]:
    job = SpeechJob(worker.new_job_id(), "", "", list_voices=True)
    spoken = Speech(worker.submit(job))
    try:
        voices: list[str] = []
        while (chunks := await spoken.next_chunks()) is not None:
            for chunk in chunks:
                voices += chunk.voices
        return voices
    finally:
        spoken.close()
