"""GET /metrics: the gateway and its workers in Prometheus' formats, with prometheus-client.

Three sources, each in the app's own :class:`CollectorRegistry`:

- :class:`RequestMetrics`: requests and latency per route template and
  status, recorded by the access-log middleware;
- :class:`ModelMetrics`: per model (label ``model_name``), vLLM's request
  metrics under the ``mlx_gateway:`` prefix (time to first token, inter-token
  latency, end-to-end and queue time, prompt and generation tokens) and the
  other families' (speech time to first audio and real-time factor,
  transcription real-time factor, image denoising step), observed by
  :mod:`gateway.job_timing` as each job's events reach the gateway;
- :class:`WorkerCollector`: what each worker's latest heartbeat and its
  supervisor's status say (state, running and waiting requests, restarts,
  memory, loop age), read when scraped: no thread polls anything, and a
  scrape costs no worker a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from gateway.worker_client import WorkerClient

PREFIX = "mlx_gateway:"
MODEL = ("model_name",)
# Seconds; generation requests span milliseconds (a health probe) to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# vLLM's buckets for the same histograms.
TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0),
    *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)
ITL_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0),
    *(7.5, 10.0, 20.0, 40.0, 80.0),
)
E2E_BUCKETS = (
    *(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),
    *(120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
)
# Processing seconds per second of audio: below 1 is faster than real time.
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0)
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STATES = (
    "unloaded",
    "loading",
    "ready",
    "draining",
    "unloading",
    "restarting",
    "unresponsive",
    "failed",
    "down",
)


class RequestMetrics:
    """Counts and latency histograms per (route, status) and route.

    Requests are labelled with their route's template (``/v1/models/{model:path}``),
    and requests matching no route as "other", so a client probing random URLs
    cannot grow the label set without bound.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mlx_gateway_requests",
            "HTTP requests answered, by path and status.",
            ("path", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "mlx_gateway_request_duration_seconds",
            "Time to the end of the response.",
            ("path",),
            buckets=BUCKETS,
            registry=registry,
        )

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.duration.labels(path).observe(seconds)


@dataclass
class ModelSeries:
    """One model's children of every :class:`ModelMetrics` family."""

    time_to_first_token: Histogram
    inter_token_latency: Histogram
    e2e_request_latency: Histogram
    request_queue_time: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    speech_time_to_first_audio: Histogram
    speech_real_time_factor: Histogram
    transcription_real_time_factor: Histogram
    image_step: Histogram


class ModelMetrics:
    """Per-model request metrics, by vLLM's names where they overlap."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def histogram(name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, help_text, MODEL, buckets=buckets, registry=registry)

        def counter(name: str, help_text: str) -> Counter:
            return Counter(PREFIX + name, help_text, MODEL, registry=registry)

        self.time_to_first_token = histogram(
            "time_to_first_token_seconds",
            "Seconds from a request's arrival to its job's first token.",
            TTFT_BUCKETS,
        )
        self.inter_token_latency = histogram(
            "inter_token_latency_seconds",
            "Seconds between tokens after the first, as they reach the gateway.",
            ITL_BUCKETS,
        )
        self.e2e_request_latency = histogram(
            "e2e_request_latency_seconds",
            "Seconds from a request's arrival to its job's end.",
            E2E_BUCKETS,
        )
        self.request_queue_time = histogram(
            "request_queue_time_seconds",
            "Seconds from a request's arrival until its jobs were sent to the model "
            "process (body read and checked, images fetched, the model loaded).",
            TTFT_BUCKETS,
        )
        self.prompt_tokens = counter(
            "prompt_tokens", "Prompt tokens of finished jobs (inputs, for embeddings)."
        )
        self.generation_tokens = counter("generation_tokens", "Tokens generated by finished jobs.")
        self.speech_time_to_first_audio = histogram(
            "speech_time_to_first_audio_seconds",
            "Seconds from a speech request's arrival to its first audio.",
            TTFT_BUCKETS,
        )
        self.speech_real_time_factor = histogram(
            "speech_real_time_factor", "Seconds of synthesis per second of speech.", RTF_BUCKETS
        )
        self.transcription_real_time_factor = histogram(
            "transcription_real_time_factor",
            "Seconds of transcription per second of audio.",
            RTF_BUCKETS,
        )
        self.image_step = histogram(
            "image_step_seconds", "Seconds per denoising step of image generation.", STEP_BUCKETS
        )
        self._series: dict[str, ModelSeries] = {}

    def of(self, model: str) -> ModelSeries:
        """The model's series (created, at zero, on first use)."""
        series = self._series.get(model)
        if series is None:
            series = self._series[model] = ModelSeries(
                time_to_first_token=self.time_to_first_token.labels(model),
                inter_token_latency=self.inter_token_latency.labels(model),
                e2e_request_latency=self.e2e_request_latency.labels(model),
                request_queue_time=self.request_queue_time.labels(model),
                prompt_tokens=self.prompt_tokens.labels(model),
                generation_tokens=self.generation_tokens.labels(model),
                speech_time_to_first_audio=self.speech_time_to_first_audio.labels(model),
                speech_real_time_factor=self.speech_real_time_factor.labels(model),
                transcription_real_time_factor=self.transcription_real_time_factor.labels(model),
                image_step=self.image_step.labels(model),
            )
        return series


class WorkerCollector(Collector):
    """Each worker's state and load, from its latest heartbeat and supervisor status."""

    def __init__(
        self,
        workers: Callable[[], Iterable[WorkerClient]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, help_text: str, labels: tuple[str, ...] = MODEL) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, help_text, labels=labels)

        info = gauge("model_info", "Each configured model and its family.", (*MODEL, "family"))
        state = gauge("model_state", "1 for the model's current state.", (*MODEL, "state"))
        in_flight = gauge(
            "model_requests_in_flight", "Jobs the gateway has sent to the model and not seen end."
        )
        running = gauge("num_requests_running", "Jobs the model process is running.")
        waiting = gauge("num_requests_waiting", "Jobs waiting in the model process.")
        loop_age = gauge(
            "model_loop_age_seconds", "Seconds since the model's generation loop last answered."
        )
        memory = gauge(
            "model_memory_bytes",
            "The model process's memory (last heartbeat): rss, mlx_active, mlx_peak.",
            (*MODEL, "kind"),
        )
        restarts = CounterMetricFamily(
            PREFIX + "model_restarts",
            "Times the supervisor restarted the model process, by why it had stopped.",
            labels=(*MODEL, "reason"),
        )
        now = self._clock()
        for worker in self._workers():
            name = worker.model.name
            info.add_metric([name, worker.model.family], 1)
            current = worker.state
            for s in STATES:
                state.add_metric([name, s], int(s == current))
            in_flight.add_metric([name], worker.in_flight)
            if (pong := worker.pong) is not None:
                running.add_metric([name], pong.stats.active)
                waiting.add_metric([name], pong.stats.queued)
                loop_age.add_metric([name], max(0.0, now - worker.last_pong))
                stats = pong.stats
                memory.add_metric([name, "rss"], stats.rss_bytes)
                memory.add_metric([name, "mlx_active"], stats.mlx_active_bytes)
                memory.add_metric([name, "mlx_peak"], stats.mlx_peak_bytes)
            if (status := worker.supervisor) is not None:
                for reason, count in status.restarts_by_reason.items():
                    restarts.add_metric([name, reason], count)
        yield from (info, state, in_flight, running, waiting, loop_age, memory, restarts)


def metrics_registry(
    workers: Callable[[], Iterable[WorkerClient]],
) -> tuple[CollectorRegistry, RequestMetrics, ModelMetrics]:
    """The app's registry, with its request and model metrics and the workers' collector."""
    registry = CollectorRegistry()
    request_metrics, model_metrics = RequestMetrics(registry), ModelMetrics(registry)
    registry.register(WorkerCollector(workers))
    return registry, request_metrics, model_metrics


async def metrics(request: Request) -> Response:
    """Prometheus' text format, or OpenMetrics when the scraper asks for it."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(request.app.state.metrics_registry), media_type=content_type)
