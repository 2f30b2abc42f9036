"""A job's timings from its events, on a stand-in clock."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gateway.job_timing import JobTimer
from gateway.metrics import ModelMetrics
from protocol.messages import AudioChunk, Delta, Finished, Progress, Transcript, Usage


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def timer(registry: CollectorRegistry, clock: Clock, family: str = "llm") -> JobTimer:
    series = ModelMetrics(registry).of("m")
    return JobTimer(series, family, arrived=9.5, clock=clock)


def histogram(registry: CollectorRegistry, name: str) -> tuple[float, float]:
    """(count, sum) of the model's histogram ``name``."""
    labels = {"model_name": "m"}
    count = registry.get_sample_value(f"mlx_gateway:{name}_count", labels)
    total = registry.get_sample_value(f"mlx_gateway:{name}_sum", labels)
    assert count is not None and total is not None
    return count, total


def test_text_time_to_first_token_inter_token_latency_and_end(
    registry: CollectorRegistry,
) -> None:
    clock = Clock()
    job = timer(registry, clock)
    clock.now = 10.25
    job(Delta("j", "Once", 1))
    clock.now = 10.45
    job(Delta("j", " upon a", 2))  # two tokens in 0.2 s: 0.1 s each
    job(Delta("j", "", 0))  # no tokens (a held-back text): not a gap
    clock.now = 10.5
    job(Finished("j", "stop", Usage(prompt_tokens=7, completion_tokens=4)))
    assert histogram(registry, "time_to_first_token_seconds") == (1, pytest.approx(0.75))
    assert histogram(registry, "inter_token_latency_seconds") == (2, pytest.approx(0.2))
    assert histogram(registry, "e2e_request_latency_seconds") == (1, pytest.approx(1.0))
    labels = {"model_name": "m"}
    assert registry.get_sample_value("mlx_gateway:prompt_tokens_total", labels) == 7
    assert registry.get_sample_value("mlx_gateway:generation_tokens_total", labels) == 4


def test_speech_time_to_first_audio_and_real_time_factor(registry: CollectorRegistry) -> None:
    clock = Clock()
    job = timer(registry, clock, "kokoro")
    clock.now = 10.5
    job(AudioChunk("j", b"\0\0" * 24_000, 24_000, 0.0))  # one second of audio
    clock.now = 11.0
    job(AudioChunk("j", b"\0\0" * 24_000, 24_000, 1.0))  # and another
    job(Finished("j", "stop", Usage(0, 0)))
    assert histogram(registry, "speech_time_to_first_audio_seconds") == (1, pytest.approx(1.0))
    # One second after the job was sent, two seconds of speech.
    assert histogram(registry, "speech_real_time_factor") == (1, pytest.approx(0.5))
    labels = {"model_name": "m"}
    assert registry.get_sample_value("mlx_gateway:prompt_tokens_total", labels) == 0


def test_transcription_real_time_factor(registry: CollectorRegistry) -> None:
    clock = Clock()
    job = timer(registry, clock, "whisper")
    clock.now = 12.0
    job(Transcript("j", "hello", "en", duration=8.0))
    assert histogram(registry, "transcription_real_time_factor") == (1, pytest.approx(0.25))


def test_image_step_seconds_between_progress_reports(registry: CollectorRegistry) -> None:
    clock = Clock()
    job = timer(registry, clock, "flux")
    clock.now = 13.0  # text encoding and the first step: not a step's time
    job(Progress("j", 1, 4))
    clock.now = 13.5
    job(Progress("j", 3, 4))  # two steps in 0.5 s
    clock.now = 14.0
    job(Progress("j", 1, 4, index=1))  # the next image starts: no step measured
    assert histogram(registry, "image_step_seconds") == (2, pytest.approx(0.5))
