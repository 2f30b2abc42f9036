"""OpenAI Images API shapes (``/v1/images/generations`` and ``/v1/images/edits``).

Fields this server accepts but cannot vary (``quality``, ``style``,
``moderation``, ``user``) are taken and ignored, as OpenAI's SDKs send them;
values it cannot honour (a transparent background, a JPEG output) fail
validation, so the 400 names the field. ``seed``, ``steps``, ``guidance``,
``negative_prompt`` and ``strength`` (edits: img2img instead of a
reference edit) are extensions.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

ImageCount = Annotated[int, Meta(ge=1, le=10)]
PartialImages = Annotated[int, Meta(ge=0, le=3)]
Steps = Annotated[int, Meta(ge=1, le=1000)]
Guidance = Annotated[float, Meta(ge=0.0, le=100.0)]
Strength = Annotated[float, Meta(gt=0.0, le=1.0)]


class _ImageParams(msgspec.Struct, kw_only=True):
    model: str
    prompt: Annotated[str, Meta(min_length=1)]
    n: ImageCount = 1
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: Literal["png"] | None = None
    background: Literal["auto", "opaque"] | None = None
    quality: str | None = None
    style: str | None = None
    moderation: str | None = None
    user: str | None = None
    stream: bool = False
    partial_images: PartialImages | None = None
    # Extensions.
    seed: int | None = None
    steps: Steps | None = None
    guidance: Guidance | None = None
    negative_prompt: str | None = None


class ImageGenerationRequest(_ImageParams, kw_only=True):
    pass


class ImageEditFields(_ImageParams, kw_only=True):
    """The text fields of an edit's multipart form (the files come apart)."""

    strength: Strength | None = None


class ImageData(msgspec.Struct, omit_defaults=True):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class InputTokensDetails(msgspec.Struct):
    text_tokens: int
    image_tokens: int


class ImageUsage(msgspec.Struct):
    """``input_tokens``: prompt tokens; ``output_tokens``: latent patches made
    (one per 16x16 pixels of each image)."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    total_tokens: int


class ImagesResponse(msgspec.Struct):
    created: int
    data: list[ImageData]
    usage: ImageUsage | None = None
    size: str | None = None
    output_format: str = "png"
    background: str = "opaque"


class PartialImageEvent(msgspec.Struct):
    """``image_generation.partial_image`` / ``image_edit.partial_image``."""

    type: str
    b64_json: str
    created_at: int
    size: str
    partial_image_index: int
    output_format: str = "png"
    quality: str = "auto"
    background: str = "opaque"


class CompletedEvent(msgspec.Struct, omit_defaults=True):
    """``image_generation.completed`` / ``image_edit.completed``; the last
    image's event carries the job's usage."""

    type: str
    b64_json: str
    created_at: int
    size: str
    output_format: str = "png"
    quality: str = "auto"
    background: str = "opaque"
    usage: ImageUsage | None = None
