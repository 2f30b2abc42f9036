"""One job's timings, taken from its events as they reach the gateway.

A :class:`JobTimer` is its :class:`~gateway.job_stream.JobStream`'s observer:
called with each event the moment the receive task puts it on the stream
(before any client reads it, so a slow client does not skew the times). It
observes the model's :class:`~gateway.metrics.ModelSeries`:

- text: time to first token (from the request's arrival), then the gap per
  token of each later delta (a delta carries every token of one engine step);
  end-to-end time and the prompt and generated tokens at its ``Finished``;
- speech: time to first audio, and at the end the real-time factor
  (seconds since the job was sent per second of audio made);
- transcription: the real-time factor when the transcript arrives;
- images: seconds per denoising step, between progress reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.job_stream import JobEvent
from gateway.metrics import ModelSeries
from protocol.messages import AudioChunk, Delta, Finished, Progress, Transcript

# Families whose usage counts prompt and generated tokens.
TOKEN_FAMILIES = ("llm", "vlm", "embeddings")


class JobTimer:
    def __init__(
        self,
        series: ModelSeries,
        family: str,
        arrived: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._series = series
        self._family = family
        self._arrived = arrived
        self._clock = clock
        self._sent = clock()
        self._last_token: float | None = None
        self._audio_seconds = 0.0
        self._progress: tuple[int, int, float] | None = None  # image index, step, when

    def __call__(self, event: JobEvent) -> None:
        now = self._clock()
        series = self._series
        match event:
            case Delta(tokens=tokens) if tokens > 0:
                if self._last_token is None:
                    series.time_to_first_token.observe(now - self._arrived)
                else:
                    gap = (now - self._last_token) / tokens
                    for _ in range(tokens):
                        series.inter_token_latency.observe(gap)
                self._last_token = now
            case AudioChunk(pcm=pcm, sample_rate=rate, start=start) if pcm:
                if self._audio_seconds == 0.0:
                    series.speech_time_to_first_audio.observe(now - self._arrived)
                self._audio_seconds = max(self._audio_seconds, start + len(pcm) / 2 / rate)
            case Transcript(duration=duration) if duration > 0:
                series.transcription_real_time_factor.observe((now - self._sent) / duration)
            case Progress(index=index, step=step):
                last = self._progress
                if last is not None and last[0] == index and step > last[1]:
                    steps = step - last[1]
                    for _ in range(steps):
                        series.image_step.observe((now - last[2]) / steps)
                self._progress = (index, step, now)
            case Finished(usage=usage):
                series.e2e_request_latency.observe(now - self._arrived)
                if self._family in TOKEN_FAMILIES:
                    series.prompt_tokens.inc(usage.prompt_tokens)
                    series.generation_tokens.inc(usage.completion_tokens)
                if self._audio_seconds > 0:
                    series.speech_real_time_factor.observe((now - self._sent) / self._audio_seconds)
