"""The images a job brings and the PNGs it sends: decoded (a 400 naming the
field when they are not images), scaled down to a model's limit, an edit's
mask read and honoured by compositing. PIL is imported when first needed."""

from __future__ import annotations

import io
from typing import Any

from workers.engine import JobError


def decode_image(data: bytes, *, what: str, param: str) -> Any:
    """A PIL image from a job's file bytes (PNG, JPEG, GIF, WebP, BMP...), or
    the 400 naming ``what`` it was and the request field (``param``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise JobError(f"{what} could not be decoded: {exc}", param=param) from exc
    return image


def mask_alpha(data: bytes, size: tuple[int, int]) -> Any:
    """An edit's mask: a PNG the size of the image whose transparent pixels
    mark where to edit (OpenAI's definition); its alpha channel."""
    mask = decode_image(data, what="the mask", param="mask")
    if mask.size != size:
        raise JobError(
            f"the mask is {mask.width}x{mask.height} but the image is {size[0]}x{size[1]}",
            param="mask",
        )
    if "A" not in mask.getbands() and "transparency" not in mask.info:
        raise JobError(
            "the mask has no alpha channel: its transparent pixels mark where to edit",
            param="mask",
        )
    return mask.convert("RGBA").getchannel("A")


def paste_back(source: Any, edited: Any, keep: Any) -> Any:
    """The edit where the mask is transparent, the input image where it is
    opaque (blended in between). FLUX.2-klein edits the whole picture from
    the prompt; mflux has no inpainting for it, so the mask is honoured by
    compositing, at the edited image's size."""
    from PIL import Image

    size = edited.size
    source = source.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    keep = keep.resize(size, Image.Resampling.BILINEAR)
    return Image.composite(source, edited.convert("RGB"), keep)


def bounded(image: Any, max_pixels: int) -> Any:
    """The input image, scaled down to ``max_pixels`` if larger: its VAE encode
    is one engine step, and its cost grows with the pixels (mflux itself would
    only bring a reference down to 1024x1024)."""
    if image.width * image.height <= max_pixels:
        return image
    from PIL import Image

    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(16, int(image.width * scale)), max(16, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """An input image's size, scaled down to ``max_pixels`` and to multiples of 16."""
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    return max(16, int(width * scale) // 16 * 16), max(16, int(height * scale) // 16 * 16)


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
