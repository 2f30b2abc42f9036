"""POST /v1/images/generations, POST /v1/images/edits, GET /v1/images/files/{id}.png.

A request becomes one :class:`~protocol.messages.ImageJob` (its ``n`` images
are made one after another by the worker), so a model's ``max_pending``
counts image requests. The worker reports each denoising step as a
``Progress`` and each finished image as a ``GeneratedImage`` (PNG bytes);
the reply holds them as base64 or as URLs into the gateway's
:class:`~gateway.image_store.ImageStore`. With ``stream: true`` the reply is
OpenAI's image SSE events: ``*.partial_image`` for the previews asked for
with ``partial_images``, then ``*.completed`` per image. A client that goes
away cancels the job in the worker.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import AsyncIterator

import msgspec
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from gateway.body import decode_json, invalid_request, read_limited
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.errors import APIError
from gateway.generation import now
from gateway.image_schemas import (
    CompletedEvent,
    ImageData,
    ImageEditFields,
    ImageGenerationRequest,
    ImagesResponse,
    ImageUsage,
    InputTokensDetails,
    PartialImageEvent,
)
from gateway.image_store import ImageStore
from gateway.job_stream import JobStream
from gateway.sse import sse_event, sse_response
from protocol.config import Family
from protocol.messages import Finished, GeneratedImage, ImageJob, Progress

IMAGE_FAMILIES: tuple[Family, ...] = ("flux",)
MIN_SIDE, MAX_SIDE = 16, 2048
_SIZE = re.compile(r"^(\d+)x(\d+)$")


async def image_generations(request: Request) -> Response:
    body = await decode_json(request, ImageGenerationRequest)
    return await _run(request, body, "image_generation")


async def image_edits(request: Request) -> Response:
    fields, image, mask = await _edit_form(request)
    return await _run(request, fields, "image_edit", image, mask)


async def image_file(request: Request) -> Response:
    name: str = request.path_params["name"]
    store: ImageStore = request.app.state.image_store
    png = store.get(name.removesuffix(".png")) if name.endswith(".png") else None
    if png is None:
        raise APIError(
            404, f"no image {name!r}: its URL has expired or never existed", code="not_found"
        )
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


# --- one request --------------------------------------------------------------


async def _run(
    request: Request,
    body: ImageGenerationRequest | ImageEditFields,
    kind: str,
    image: bytes | None = None,
    mask: bytes | None = None,
) -> Response:
    worker = request.app.state.registry.resolve(body.model, IMAGE_FAMILIES)
    width, height = _size(body.size)
    if body.stream and body.response_format == "url":
        raise APIError(400, "streamed images are sent as b64_json", param="response_format")
    if body.partial_images and not body.stream:
        raise APIError(400, "'partial_images' needs 'stream': true", param="partial_images")
    job = ImageJob(
        id=worker.new_job_id(),
        prompt=body.prompt,
        width=width,
        height=height,
        n=body.n,
        seed=body.seed,
        steps=body.steps,
        guidance=body.guidance,
        negative_prompt=body.negative_prompt,
        image=image,
        mask=mask,
        strength=getattr(body, "strength", None),
        partial_images=body.partial_images or 0,
    )
    stream = await submit_job(request, worker, job)
    if body.stream:
        return sse_response(_events(stream, kind, body.n))
    return await respond_while_connected(request, _reply(request, stream, body.response_format))


async def _reply(request: Request, stream: JobStream, response_format: str | None) -> Response:
    images: dict[int, bytes] = {}
    finished: Finished | None = None
    async for event in stream.events():
        if isinstance(event, GeneratedImage):
            images[event.index] = event.png
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None  # a job's events end with its Finished
    pngs = [images[i] for i in sorted(images)]
    if response_format == "url":
        store: ImageStore = request.app.state.image_store
        data = [ImageData(url=_url(request, store.put(png))) for png in pngs]
    else:
        data = [ImageData(b64_json=_b64(png)) for png in pngs]
    size = _png_size(pngs[0])
    reply = ImagesResponse(created=now(), data=data, usage=_usage(finished), size=size)
    return Response(msgspec.json.encode(reply), media_type="application/json")


async def _events(stream: JobStream, kind: str, n: int) -> AsyncIterator[bytes]:
    """OpenAI's image stream: previews as ``partial_image``, each image as ``completed``."""
    created = now()
    partials = 0
    held: GeneratedImage | None = None  # the last image waits for the job's usage
    async for event in stream.events():
        if isinstance(event, Progress) and event.preview_png is not None:
            png = event.preview_png
            partial = PartialImageEvent(
                f"{kind}.partial_image", _b64(png), created, _png_size(png), partials
            )
            partials += 1
            yield sse_event(partial, partial.type)
        elif isinstance(event, GeneratedImage):
            if event.index < n - 1:
                yield _completed(kind, event.png, created, None)
            else:
                held = event
        elif isinstance(event, Finished) and held is not None:
            yield _completed(kind, held.png, created, _usage(event))


def _completed(kind: str, png: bytes, created: int, usage: ImageUsage | None) -> bytes:
    event = CompletedEvent(f"{kind}.completed", _b64(png), created, _png_size(png), usage=usage)
    return sse_event(event, event.type)


# --- request parts --------------------------------------------------------------


def _size(size: str | None) -> tuple[int, int]:
    """``WxH`` as (width, height); ``auto`` / absent is (0, 0): the worker decides
    (its default size, or an edit's input image size)."""
    if size is None or size == "auto":
        return 0, 0
    match = _SIZE.match(size)
    if match is None:
        raise APIError(400, f"'size' must be 'WIDTHxHEIGHT' or 'auto', not {size!r}", param="size")
    width, height = int(match.group(1)), int(match.group(2))
    for side in (width, height):
        if side % 16 or not MIN_SIDE <= side <= MAX_SIDE:
            raise APIError(
                400,
                f"size {size!r}: width and height must be multiples of 16 "
                f"from {MIN_SIDE} to {MAX_SIDE}",
                param="size",
            )
    return width, height


async def _edit_form(request: Request) -> tuple[ImageEditFields, bytes, bytes | None]:
    """The multipart form of an edit: its fields validated, the image and mask bytes."""
    limit = request.app.state.config.gateway.max_body_bytes
    # The size limit (413) is checked while reading; form() then parses the
    # body Starlette keeps in ``_body`` (where Request.body() caches it).
    request._body = await read_limited(request, limit)
    form = await request.form(max_files=20, max_fields=100, max_part_size=limit)
    try:
        images = form.getlist("image") + form.getlist("image[]")
        if not images:
            raise APIError(400, "an edit needs an 'image' file", param="image")
        if len(images) > 1:
            raise APIError(400, "this server edits one image per request", param="image")
        image = await _file_bytes(images[0], "image")
        mask_part = form.get("mask")
        mask = await _file_bytes(mask_part, "mask") if mask_part is not None else None
        fields = _form_fields(form)
    finally:
        await form.close()
    return fields, image, mask


async def _file_bytes(part: UploadFile | str, param: str) -> bytes:
    if not isinstance(part, UploadFile):
        raise APIError(400, f"'{param}' must be a file upload", param=param)
    data = await part.read()
    if not data:
        raise APIError(400, f"'{param}' is empty", param=param)
    return data


def _form_fields(form: FormData) -> ImageEditFields:
    text = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    # Form values are strings: a lax conversion turns "2" into 2, "true" into True.
    try:
        return msgspec.convert(text, ImageEditFields, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_request(exc) from exc


# --- replies ------------------------------------------------------------------


def _usage(finished: Finished) -> ImageUsage:
    usage = finished.usage
    return ImageUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(text_tokens=usage.prompt_tokens, image_tokens=0),
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def _url(request: Request, image_id: str) -> str:
    return str(request.url_for("image_file", name=f"{image_id}.png"))


def _png_size(png: bytes) -> str:
    """``WxH`` from the PNG header (IHDR is always the first chunk)."""
    width, height = struct.unpack(">II", png[16:24])
    return f"{width}x{height}"


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()
