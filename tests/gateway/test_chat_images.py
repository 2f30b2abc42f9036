"""gateway/chat_images.py: image parts' URLs to bytes, within the config's limits."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.chat_images import load_image
from gateway.errors import APIError
from protocol.config import GatewaySettings
from tests.conftest import png_data_url

PNG = base64.b64decode(png_data_url().split(",", 1)[1])
PARAM = "messages[0].content[1]"


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/cat.png":
            body, status = PNG, 200
        elif self.path == "/big.png":
            body, status = PNG + b"\0" * 4096, 200
        else:
            body, status = b"missing", 404
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_data_url() -> None:
    assert await load_image(png_data_url(), param=PARAM, settings=GatewaySettings()) == PNG


async def test_http_fetch_within_the_size_limit(server: str) -> None:
    settings = GatewaySettings(image_max_bytes=len(PNG) + 100)
    assert await load_image(f"{server}/cat.png", param=PARAM, settings=settings) == PNG
    with pytest.raises(APIError, match="larger than") as big:
        await load_image(f"{server}/big.png", param=PARAM, settings=settings)
    assert big.value.param == PARAM
    with pytest.raises(APIError, match="HTTP 404"):
        await load_image(f"{server}/nothing.png", param=PARAM, settings=settings)


async def test_local_files_only_when_allowed(tmp_path: Path) -> None:
    file = tmp_path / "cat.png"
    file.write_bytes(PNG)
    with pytest.raises(APIError, match="not allowed"):
        await load_image(str(file), param=PARAM, settings=GatewaySettings())
    allowed = GatewaySettings(allow_local_images=True)
    assert await load_image(str(file), param=PARAM, settings=allowed) == PNG
    assert await load_image(file.as_uri(), param=PARAM, settings=allowed) == PNG
    with pytest.raises(APIError, match="cannot read"):
        await load_image(str(tmp_path / "none.png"), param=PARAM, settings=allowed)
