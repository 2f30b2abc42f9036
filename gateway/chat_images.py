"""Chat ``image_url`` parts turned into image bytes for a vision worker.

``data:`` URLs (base64) are always accepted; local paths (``file://...`` or an
absolute path) only when ``gateway.allow_local_images`` is set; ``http(s)``
URLs are fetched here, bounded by ``image_max_bytes`` and
``image_fetch_timeout``, so a worker never touches the network. Every failure
is a 400 naming the part. The bytes are only sniffed for a known image format
here; the worker decodes them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from gateway.errors import APIError
from protocol.config import GatewaySettings

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def image_format(data: bytes) -> str | None:
    """The image format ``data`` starts like, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


async def load_image(url: str, *, param: str, settings: GatewaySettings) -> bytes:
    """The bytes of one image part's URL; APIError(400, param=param) if unusable."""
    url = url.strip()
    limit = settings.image_max_bytes
    if url.startswith("data:"):
        data = _data_url(url, param, limit)
    elif url.startswith(("http://", "https://")):
        data = await _fetch(url, param, limit, settings.image_fetch_timeout)
    elif url.startswith("file://") or url.startswith("/"):
        if not settings.allow_local_images:
            raise APIError(
                400,
                "local image paths are not allowed by this gateway "
                "(use a data: or https: URL; the config's gateway.allow_local_images enables them)",
                param=param,
            )
        path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
        data = await asyncio.to_thread(_read_file, path, param, limit)
    else:
        raise APIError(400, "an image URL must be a data:, http(s): or file: URL", param=param)
    if image_format(data) is None:
        raise APIError(400, "the image is not a PNG, JPEG, GIF, WebP or BMP file", param=param)
    return data


def _data_url(url: str, param: str, limit: int) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise APIError(400, "a data URL image must be 'data:image/...;base64,<data>'", param=param)
    if len(payload) > limit * 4 // 3 + 4:
        raise APIError(400, f"the image is larger than {limit} bytes", param=param)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "the data URL's base64 is invalid", param=param) from None


async def _fetch(url: str, param: str, limit: int, seconds: float) -> bytes:
    try:
        async with (
            asyncio.timeout(seconds),
            httpx.AsyncClient(timeout=seconds, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise APIError(
                    400, f"fetching the image gave HTTP {response.status_code}", param=param
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise APIError(400, f"the image is larger than {limit} bytes", param=param)
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise APIError(400, f"fetching the image took over {seconds:g} s", param=param) from None
    except httpx.HTTPError as exc:
        raise APIError(400, f"could not fetch the image: {exc}", param=param) from None


def _read_file(path: Path, param: str, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise APIError(400, f"cannot read the image file: {exc.strerror}", param=param) from None
    if len(data) > limit:
        raise APIError(400, f"the image is larger than {limit} bytes", param=param)
    return data
