"""The VLM engine in-process on the demo Qwen2-VL: images, usage, limits, cancel."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from protocol.messages import (
    ChatJob,
    ChatMessage,
    CompletionJob,
    Events,
    Finished,
    SamplingParams,
)
from tests.conftest import png_data_url
from tests.workers.engine_helpers import loaded, submitted
from workers.engine import JobError
from workers.engines.vlm import VLMEngine

PNG = base64.b64decode(png_data_url().split(",", 1)[1])
QUESTION = "What is in this picture?"


@pytest.fixture(scope="module")
def engine(demo_vlm: Path) -> VLMEngine:
    return loaded(VLMEngine, "vlm", "demo-qwen2-vl-tiny", demo_vlm)


def run(engine: VLMEngine, *jobs: ChatJob) -> tuple[dict[str, str], dict[str, Finished], int]:
    """Submit and step to the end: (text by job, Finished by job, steps taken)."""
    answered = [events for job in jobs for events in submitted(engine, job)]
    texts: dict[str, str] = {job.id: "" for job in jobs}
    finished: dict[str, Finished] = {}
    steps = 0
    while answered or engine.has_work():
        events: Events = answered.pop(0) if answered else engine.step(0.005)
        steps += 1
        for delta in events.deltas:
            texts[delta.id] += delta.text
        for done in events.finished:
            texts[done.id] += done.text
            finished[done.id] = done
    return texts, finished, steps


def test_an_image_chat_produces_text_and_counts_the_image_tokens(engine: VLMEngine) -> None:
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=7)
    with_image = ChatJob("img", [ChatMessage("user", QUESTION, images=[PNG])], params)
    text_only = ChatJob("txt", [ChatMessage("user", QUESTION)], params)
    texts, finished, steps = run(engine, with_image, text_only)
    assert texts["img"] and texts["txt"]
    image_usage, text_usage = finished["img"].usage, finished["txt"].usage
    assert finished["img"].finish_reason in ("length", "stop")
    assert 0 < image_usage.completion_tokens <= 16
    # The 40x60 image becomes 56x84 pixels: 4x6 patches, merged 2x2 into 6
    # image tokens, between <|vision_start|> and <|vision_end|>.
    assert image_usage.prompt_tokens == text_usage.prompt_tokens + 6 + 2
    assert steps > 2  # streamed over several steps, not generated at once


def test_seeded_generation_repeats(engine: VLMEngine) -> None:
    params = SamplingParams(max_tokens=10, temperature=1.0, seed=3)
    first, _, _ = run(engine, ChatJob("a", [ChatMessage("user", QUESTION, images=[PNG])], params))
    again, _, _ = run(engine, ChatJob("b", [ChatMessage("user", QUESTION, images=[PNG])], params))
    assert first["a"] == again["b"]


def test_max_tokens_and_stop_strings(engine: VLMEngine) -> None:
    messages = [ChatMessage("user", QUESTION, images=[PNG])]
    texts, finished, _ = run(engine, ChatJob("n", messages, SamplingParams(max_tokens=3, seed=1)))
    assert finished["n"].finish_reason == "length"
    assert finished["n"].usage.completion_tokens == 3
    long_params = SamplingParams(max_tokens=40, seed=1)
    full, _, _ = run(engine, ChatJob("full", messages, long_params))
    stop = full["full"][5:7]
    assert stop.strip()
    stop_params = SamplingParams(max_tokens=40, seed=1, stop=[stop])
    cut, finished, _ = run(engine, ChatJob("cut", messages, stop_params))
    assert finished["cut"].finish_reason == "stop"
    assert finished["cut"].stop_sequence == stop
    assert cut["cut"] == full["full"][: full["full"].index(stop)]


def test_cancel_between_tokens(engine: VLMEngine) -> None:
    messages = [ChatMessage("user", QUESTION, images=[PNG])]
    engine.submit(ChatJob("long", messages, SamplingParams(max_tokens=2000)))
    engine.submit(ChatJob("queued", messages, SamplingParams(max_tokens=2000)))
    engine.step(0.005)
    assert engine.stats().active == 1 and engine.stats().queued == 1
    assert engine.cancel("long") and engine.cancel("queued")
    assert not engine.cancel("long")
    assert not engine.has_work()


def test_refusals(engine: VLMEngine) -> None:
    with pytest.raises(JobError, match="could not be decoded") as bad:
        engine.submit(ChatJob("x", [ChatMessage("user", "hi", images=[b"nope"])], SamplingParams()))
    assert bad.value.param == "messages[0].content"
    with pytest.raises(JobError, match="chat/completions"):
        engine.submit(CompletionJob("c", "hi", SamplingParams()))
    with pytest.raises(JobError) as logprobs:
        engine.submit(ChatJob("l", [ChatMessage("user", "hi")], SamplingParams(logprobs=True)))
    assert logprobs.value.param == "logprobs"
    assert not engine.has_work()


def test_count_only_reports_the_prompt_tokens_images_included(engine: VLMEngine) -> None:
    params = SamplingParams(max_tokens=4, temperature=0.0)
    messages = [ChatMessage("user", QUESTION, images=[PNG])]
    texts, finished, _ = run(
        engine,
        ChatJob("count", messages, params, count_only=True),
        ChatJob("run", messages, params),
    )
    assert texts["count"] == "" and finished["count"].usage.completion_tokens == 0
    assert finished["count"].usage.prompt_tokens == finished["run"].usage.prompt_tokens
    assert finished["count"].context_length == engine.context_length > 0
