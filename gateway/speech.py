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
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.speech_schemas import (
    AudioDelta,
    AudioDone,
    PhonemeOut,
    SpeechRequest,
    SpeechUsage,
    SpeechWithVisemes,
    VisemeOut,
    VisemesEvent,
    VoiceCard,
    VoiceList,
    WordOut,
)
from gateway.sse import sse_event, sse_response
from gateway.visemes import Viseme, merged, visemes
from gateway.worker_client import WorkerClient
from protocol.config import Family
from protocol.messages import AudioChunk, Finished, SpeechJob, Timed

SPEECH_FAMILIES: tuple[Family, ...] = ("kokoro",)
MAX_INPUT_CHARS = 4096  # OpenAI's limit


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
    stream = await submit_job(request, worker, job)
    return await respond_while_connected(request, _reply(stream, body))


async def _reply(stream: JobStream, body: SpeechRequest) -> Response:
    await stream.started()  # a refused job fails here, before any byte
    if body.stream_format == "sse":
        return sse_response(_events(stream, body))
    if body.include_visemes or not body.stream:
        return await _whole(stream, body)
    return StreamingResponse(_audio(stream, body), media_type=MEDIA_TYPES[body.response_format])


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


async def _encoded(
    stream: JobStream, fmt: str
) -> AsyncGenerator[AudioChunk | bytes | Finished, None]:
    """The job's chunks as they arrive, each followed by what the encoder made
    of it so far (if anything), then the encoder's tail and the job's
    Finished. Closing it (use ``aclosing``) cancels the job if unfinished and
    stops the encoder."""
    enc = None
    try:
        async for event in stream.events():
            if isinstance(event, AudioChunk):
                if enc is None:
                    enc = await encoder(fmt, event.sample_rate, streaming=True)
                yield event
                if data := await enc.feed(event.pcm):
                    yield data
            elif isinstance(event, Finished):
                if enc is not None and (data := await enc.finish()):
                    yield data
                yield event
    finally:
        stream.close()
        if enc is not None:
            close(enc)


async def _audio(stream: JobStream, body: SpeechRequest) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(_encoded(stream, body.response_format)) as items:
            async for item in items:
                if isinstance(item, bytes):
                    yield item
    except (APIError, EncodingError):
        return  # the headers are sent: ending the body early is all that is left


async def _events(stream: JobStream, body: SpeechRequest) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(_encoded(stream, body.response_format)) as items:
            async for item in items:
                if isinstance(item, bytes):
                    yield sse_event(AudioDelta(base64.b64encode(item).decode()))
                elif isinstance(item, Finished):
                    yield sse_event(AudioDone(_usage(item)))
                elif body.include_visemes:
                    end = item.start + len(item.pcm) / 2 / item.sample_rate
                    yield sse_event(_visemes_event(item, end))
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


async def _whole(stream: JobStream, body: SpeechRequest) -> Response:
    pcm = bytearray()
    phonemes: list[Timed] = []
    words: list[Timed] = []
    timeline: list[Viseme] = []
    sample_rate = 24_000
    usage = SpeechUsage(0, 0, 0)
    async for event in stream.events():
        if isinstance(event, AudioChunk):
            pcm += event.pcm
            sample_rate = event.sample_rate
            phonemes += event.phonemes
            words += event.words
            end = round(event.start + len(event.pcm) / 2 / sample_rate, 6)
            timeline += visemes(event.phonemes, event.start, end)
        elif isinstance(event, Finished):
            usage = _usage(event)
    try:
        audio = await encode_all(body.response_format, bytes(pcm), sample_rate)
    except EncodingError as exc:
        raise APIError(500, str(exc), code="encoding_failed") from exc
    if not body.include_visemes:
        return Response(audio, media_type=MEDIA_TYPES[body.response_format])
    reply = SpeechWithVisemes(
        audio=base64.b64encode(audio).decode(),
        format=body.response_format,
        sample_rate=sample_rate,
        duration=round(len(pcm) / 2 / sample_rate, 6),
        phonemes=[PhonemeOut(p.label, p.start, p.end) for p in phonemes],
        visemes=_visemes_out(merged(timeline)),
        words=[WordOut(w.label, w.start, w.end) for w in words],
        usage=usage,
    )
    return Response(msgspec.json.encode(reply), media_type="application/json")


def _usage(finished: Finished) -> SpeechUsage:
    used = finished.usage
    total = used.prompt_tokens + used.completion_tokens
    return SpeechUsage(used.prompt_tokens, used.completion_tokens, total)


# --- voices ---------------------------------------------------------------------


async def list_voices(request: Request) -> Response:
    """Every kokoro model's voices, or one model's with ``?model=``."""
    registry = request.app.state.registry
    name = request.query_params.get("model")
    if name is not None:
        workers = [registry.resolve(name, SPEECH_FAMILIES)]
    else:
        workers = [w for w in registry.workers.values() if w.model.family in SPEECH_FAMILIES]
    return await respond_while_connected(request, _voice_list(workers, listing_all=name is None))


async def _voice_list(workers: list[WorkerClient], *, listing_all: bool) -> Response:
    cards: list[VoiceCard] = []
    for worker in workers:
        if listing_all and worker.state != "ready":
            continue  # listing everything: skip what cannot answer now
        cards += [VoiceCard(v, worker.model.name) for v in await _voices(worker)]
    return Response(msgspec.json.encode(VoiceList(cards)), media_type="application/json")


async def _voices(worker: WorkerClient) -> list[str]:
    job = SpeechJob(worker.new_job_id(), "", "", list_voices=True)
    voices: list[str] = []
    async for event in (await worker.submit(job)).events():
        if isinstance(event, AudioChunk):
            voices += event.voices
    return voices
