"""POST /v1/audio/transcriptions and /v1/audio/translations (Whisper models).

The multipart form is parsed here, the upload's bytes go to the worker in a
:class:`~protocol.messages.TranscriptionJob` (it decodes them with ffmpeg and
answers an unreadable file with a 400 naming it), and the worker's
:class:`~protocol.messages.Transcript` is shaped into the requested
``response_format`` by :mod:`gateway.transcript_formats`.

Limits: the upload may be at most ``gateway.max_upload_bytes`` (25 MB by
default, as OpenAI's) -> 413; a client that leaves cancels its job.
"""

from __future__ import annotations

import msgspec
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway import transcript_formats as formats
from gateway.body import stream_limited
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.transcription_schemas import (
    GRANULARITIES,
    RESPONSE_FORMATS,
    ResponseFormat,
    Task,
)
from protocol.config import Family
from protocol.messages import Transcript, TranscriptionJob

SPEECH_TO_TEXT_FAMILIES: tuple[Family, ...] = ("whisper",)
# Room for the form's other fields and the multipart framing around the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


async def transcriptions(request: Request) -> Response:
    return await _serve(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _serve(request, "translate")


async def _serve(request: Request, task: Task) -> Response:
    form = await _read_form(request)
    try:
        upload = _upload(form, request.app.state.config.gateway.max_upload_bytes)
        model = _text(form, "model")
        if not model:
            raise APIError(400, "you must provide a model parameter", param="model")
        response_format = _response_format(form)
        granularities = _granularities(form, response_format) if task == "transcribe" else []
        if _text(form, "stream") in ("true", "True", "1"):
            raise APIError(400, "streaming is not supported for Whisper models", param="stream")
        worker = request.app.state.registry.resolve(model, SPEECH_TO_TEXT_FAMILIES)
        job = TranscriptionJob(
            id=worker.new_job_id(),
            audio=await upload.read(),
            task=task,
            language=_text(form, "language") or None,
            prompt=_text(form, "prompt") or None,
            temperature=_temperature(form),
            word_timestamps="word" in granularities,
            filename=upload.filename or "",
        )
    finally:
        await form.close()
    stream = await submit_job(request, worker, job)
    reply = _reply(stream, task, response_format, granularities)
    return await respond_while_connected(request, reply)


async def _read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise APIError(
            400,
            "the request body must be multipart/form-data with the audio as 'file' "
            f"(got content-type {content_type or 'none'!r})",
        )
    upload_limit = request.app.state.config.gateway.max_upload_bytes
    body = stream_limited(request, upload_limit + FORM_OVERHEAD_BYTES, _too_large(upload_limit))
    parser = MultiPartParser(request.headers, body, max_files=1)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise APIError(400, f"invalid multipart form: {exc.message}") from exc


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the uploaded file is larger than the limit of {limit} bytes ({limit / 2**20:.0f} MB)",
        code="request_too_large",
        param="file",
    )


def _upload(form: FormData, limit: int) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        message = "you must provide the audio as a file upload named 'file'"
        raise APIError(400, message, param="file")
    if upload.size is not None and upload.size > limit:
        raise _too_large(limit)
    return upload


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise APIError(400, f"'{name}' must be a text field, not a file", param=name)
    return (value or "").strip()


def _response_format(form: FormData) -> ResponseFormat:
    value = _text(form, "response_format") or "json"
    for known in RESPONSE_FORMATS:
        if value == known:
            return known
    raise APIError(
        400,
        f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)} (got {value!r})",
        param="response_format",
    )


def _granularities(form: FormData, response_format: str) -> list[str]:
    # The SDK sends a list as repeated "timestamp_granularities[]" fields.
    values = [
        v.strip()
        for key in ("timestamp_granularities[]", "timestamp_granularities")
        for v in form.getlist(key)
        if isinstance(v, str) and v.strip()
    ]
    for value in values:
        if value not in GRANULARITIES:
            raise APIError(
                400,
                f"'timestamp_granularities' values must be 'word' or 'segment' (got {value!r})",
                param="timestamp_granularities",
            )
    if values and response_format != "verbose_json":
        raise APIError(
            400,
            "'timestamp_granularities' requires response_format 'verbose_json'",
            param="timestamp_granularities",
        )
    return values


def _temperature(form: FormData) -> float:
    value = _text(form, "temperature")
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise APIError(
            400, f"'temperature' must be a number (got {value!r})", param="temperature"
        ) from None


async def _reply(
    stream: JobStream, task: Task, response_format: ResponseFormat, granularities: list[str]
) -> Response:
    transcript: Transcript | None = None
    async for event in stream.events():
        if isinstance(event, Transcript):
            transcript = event
    if transcript is None:
        raise APIError(500, "the worker finished without a transcript")
    return _render(transcript, task, response_format, granularities)


def _render(
    transcript: Transcript,
    task: Task,
    response_format: ResponseFormat,
    granularities: list[str],
) -> Response:
    match response_format:
        case "json":
            return _json(formats.as_json(transcript))
        case "verbose_json":
            reply = formats.as_verbose_json(
                transcript,
                task,
                segments="segment" in granularities or not granularities,
                words="word" in granularities,
            )
            return _json(reply)
        case "text":
            return PlainTextResponse(formats.as_text(transcript))
        case "srt":
            return PlainTextResponse(formats.as_srt(transcript))
        case "vtt":
            return PlainTextResponse(formats.as_vtt(transcript))


def _json(reply: msgspec.Struct) -> Response:
    return Response(msgspec.json.encode(reply), media_type="application/json")
