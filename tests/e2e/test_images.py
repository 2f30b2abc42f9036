"""The Images API through the stack: the demo FLUX.2-klein worker (mflux), with
the official openai SDK.

The demo model's weights are random, so its images are noise: the tests check
shapes, counts, formats, errors and the worker's behaviour, not pictures. A
64x64 image with one denoising step takes a few seconds on a CPU, so the
module makes only a handful.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import mask_png, png_bytes
from tests.e2e.harness import Stack, running_stack

FLUX, LLM = "demo-flux2-klein-tiny", "demo-llama-tiny"
URL_TTL = 4.0
ONE_STEP = {"steps": 1, "seed": 7}


@pytest.fixture(scope="module")
def stack(
    demo_flux: Path, demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Its own stack, so the session's shared one does not wait for mflux."""
    models: list[dict[str, Any]] = [
        {
            "name": FLUX,
            "family": "flux",
            "path": str(demo_flux),
            "demo": True,
            "max_pending": 2,
            "options": {"default_size": 64, "default_steps": 1},
        },
        {"name": LLM, "family": "llm", "path": str(demo_models[LLM])},
    ]
    settings = {"image_url_ttl": URL_TTL, "image_store_capacity": 4}
    with running_stack(models, tmp_path_factory.mktemp("images"), gateway=settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_generates_n_pngs_at_the_requested_size(client: openai.OpenAI) -> None:
    reply = client.images.generate(
        model=FLUX, prompt="a lighthouse at dusk", n=2, size="64x48", extra_body=ONE_STEP
    )
    assert reply.data is not None and len(reply.data) == 2
    images = [decoded(d.b64_json) for d in reply.data]
    assert all(i.format == "PNG" and i.size == (64, 48) for i in images)
    # Seeds 7 and 8: two different noise images.
    assert images[0].tobytes() != images[1].tobytes()
    assert reply.usage is not None
    assert reply.usage.input_tokens > 0
    assert reply.usage.output_tokens == 2 * (64 // 16) * (48 // 16)
    assert reply.size == "64x48" and reply.output_format == "png"


def test_url_images_are_served_until_they_expire(client: openai.OpenAI) -> None:
    reply = client.images.generate(
        model=FLUX, prompt="a red fox", response_format="url", extra_body=ONE_STEP
    )
    assert reply.data is not None and reply.data[0].url is not None
    url = reply.data[0].url
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (64, 64)  # default_size
    time.sleep(URL_TTL + 0.5)
    gone = httpx.get(url)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("size", ["100x64", "0x64", "4096x64", "large"])
def test_bad_size_is_400(client: openai.OpenAI, size: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=FLUX, prompt="x", size=size)  # type: ignore[arg-type]
    assert caught.value.param == "size"


def test_other_families_are_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=LLM, prompt="x", size="64x64")
    assert caught.value.param == "model" and caught.value.code == "model_not_supported"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=FLUX, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.param == "model"


def test_negative_prompt_needs_guidance(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(
            model=FLUX, prompt="x", size="64x64", extra_body={"negative_prompt": "blur"}
        )
    assert caught.value.param == "negative_prompt"


def test_edit_keeps_the_input_size(client: openai.OpenAI) -> None:
    reply = client.images.edit(
        model=FLUX,
        image=("photo.png", png_bytes(80, 48), "image/png"),
        prompt="make the sky green",
        extra_body=ONE_STEP,
    )
    assert reply.data is not None and len(reply.data) == 1
    assert decoded(reply.data[0].b64_json).size == (80, 48)
    masked = client.images.edit(
        model=FLUX,
        image=("photo.png", png_bytes(80, 48), "image/png"),
        mask=("mask.png", mask_png(80, 48, 40), "image/png"),
        prompt="x",
        extra_body=ONE_STEP,
    )
    assert masked.data is not None
    kept = np.asarray(decoded(masked.data[0].b64_json).convert("RGB"))[:, :40]
    assert np.array_equal(kept, np.asarray(Image.open(io.BytesIO(png_bytes(80, 48))))[:, :40])
    with pytest.raises(openai.BadRequestError) as caught:  # a mask needs transparency
        client.images.edit(
            model=FLUX,
            image=("photo.png", png_bytes(), "image/png"),
            mask=("mask.png", png_bytes(), "image/png"),
            prompt="x",
        )
    assert caught.value.param == "mask"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(model=FLUX, image=("photo.png", b"not a png", "image/png"), prompt="x")
    assert caught.value.param == "image"


def test_stream_sends_partial_images_then_the_image(client: openai.OpenAI) -> None:
    events = list(
        client.images.generate(
            model=FLUX,
            prompt="a boat",
            size="64x64",
            stream=True,
            partial_images=1,
            extra_body={"steps": 2, "seed": 1},
        )
    )
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partial, completed = events
    assert partial.partial_image_index == 0  # type: ignore[union-attr]
    assert decoded(partial.b64_json).size == (64, 64)
    assert decoded(completed.b64_json).size == (64, 64)
    assert completed.usage.input_tokens > 0  # type: ignore[union-attr]


def _worker(stack: Stack) -> dict[str, Any]:
    return stack.health()["models"][FLUX]


def test_full_queue_is_429_and_gone_clients_free_the_worker(
    stack: Stack, client: openai.OpenAI
) -> None:
    # Two slow requests (max_pending = 2): one denoising, one waiting in the
    # worker's queue. Their clients give up after a few seconds.
    def slow_request() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{stack.base_url}/v1/images/generations",
                json={"model": FLUX, "prompt": "slow", "size": "64x64", "steps": 50},
                timeout=httpx.Timeout(10, read=3.0),
            )

    threads = [threading.Thread(target=slow_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    stack.wait_until(lambda h: h["models"][FLUX]["in_flight"] == 2, 5, "two requests in flight")
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model=FLUX, prompt="x", size="64x64")
    assert caught.value.response.headers["retry-after"] == "1"
    # The worker loop keeps answering heartbeats while it denoises, step by step.
    stack.wait_until(lambda h: h["models"][FLUX]["active"] == 1, 5, "a job denoising")
    before = _worker(stack)["loop_steps"]
    time.sleep(1.0)
    after = _worker(stack)
    assert after["state"] == "ready" and after["active"] == 1
    assert after["loop_steps"] > before
    for thread in threads:
        thread.join()
    stack.wait_until(
        lambda h: h["models"][FLUX]["in_flight"] == 0 and h["models"][FLUX]["active"] == 0,
        5,
        "the cancelled jobs to leave the worker",
    )
    reply = client.images.generate(model=FLUX, prompt="next", size="64x64", extra_body=ONE_STEP)
    assert reply.data is not None and len(reply.data) == 1
