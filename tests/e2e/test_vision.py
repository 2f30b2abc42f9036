"""Chat with images through the stack: the demo Qwen2-VL worker, with the openai SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import png_data_url
from tests.e2e.conftest import QWEN, VLM


def image_message(url: str, text: str = "What is in this picture?") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def test_image_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=VLM, messages=image_message(png_data_url()), max_tokens=12, seed=1
    )
    text_only = client.chat.completions.create(
        model=VLM,
        messages=[{"role": "user", "content": "What is in this picture?"}],
        max_tokens=12,
        seed=1,
    )
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage is not None and text_only.usage is not None
    assert 0 < reply.usage.completion_tokens <= 12
    # The image's 6 tokens and its two vision markers.
    assert reply.usage.prompt_tokens == text_only.usage.prompt_tokens + 8


def test_image_chat_streamed_matches_the_whole_answer(client: openai.OpenAI) -> None:
    messages = image_message(png_data_url(seed=2))
    whole = client.chat.completions.create(model=VLM, messages=messages, max_tokens=20, seed=5)
    stream = client.chat.completions.create(
        model=VLM,
        messages=messages,
        max_tokens=20,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert "".join(pieces) == whole.choices[0].message.content
    assert reasons == [whole.choices[0].finish_reason]
    assert usage is not None and whole.usage is not None
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_a_text_model_refuses_images(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=QWEN, messages=image_message(png_data_url()))
    assert "vision model" in str(exc.value)
    assert exc.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,!!!not-base64!!!", "base64"),
        ("data:image/png,rawbytes", "data URL"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not a PNG"),
        ("ftp://example.com/cat.png", "data:, http(s): or file:"),
    ],
)
def test_a_bad_image_url_is_a_400_naming_the_part(
    client: openai.OpenAI, url: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=VLM, messages=image_message(url))
    assert message in str(exc.value)
    assert exc.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]


@pytest.mark.parametrize("url", ["/etc/hostname", "file:///etc/hostname"])
def test_local_paths_are_refused_by_default(client: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=VLM, messages=image_message(url))
    assert "local image paths are not allowed" in str(exc.value)


def test_an_unreachable_image_url_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=VLM, messages=image_message("http://127.0.0.1:9/cat.png")
        )
    assert "could not fetch the image" in str(exc.value)
    assert exc.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]
