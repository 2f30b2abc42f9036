"""GET /metrics: Prometheus text exposition of the gateway and its workers.

Request counts and latencies are recorded by the access-log middleware; each
worker's figures come from its latest heartbeat (the :class:`Pong` stats) and
its supervisor's status, read at scrape time, so a scrape costs no worker a
round trip. A worker's counters restart from zero with its process, which
Prometheus' ``rate()`` treats as a counter reset.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import Response

from gateway.registry import Registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; generation requests span milliseconds (a health probe) to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STATES = ("ready", "loading", "draining", "failed", "restarting", "unresponsive", "down")


class RequestMetrics:
    """Counts and latency histograms per (route, status) and route.

    Requests are labelled with their route's template (``/v1/models/{model:path}``),
    and requests matching no route as "other", so a client probing random URLs
    cannot grow the label set without bound.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sum: dict[str, float] = defaultdict(float)

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self._buckets[path][bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sum[path] += seconds

    def lines(self) -> list[str]:
        out = [
            "# HELP mlx_gateway_requests_total HTTP requests answered, by path and status.",
            "# TYPE mlx_gateway_requests_total counter",
        ]
        for (path, status), count in sorted(self.requests.items()):
            out.append(f'mlx_gateway_requests_total{{path="{path}",status="{status}"}} {count}')
        out += [
            "# HELP mlx_gateway_request_duration_seconds Time to the end of the response.",
            "# TYPE mlx_gateway_request_duration_seconds histogram",
        ]
        for path, counts in sorted(self._buckets.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, "+Inf"), counts, strict=True):
                cumulative += count
                out.append(
                    f'mlx_gateway_request_duration_seconds_bucket{{path="{path}",le="{bound}"}} '
                    f"{cumulative}"
                )
            name, label = "mlx_gateway_request_duration_seconds", f'{{path="{path}"}}'
            out.append(f"{name}_sum{label} {self._sum[path]}")
            out.append(f"{name}_count{label} {cumulative}")
        return out


def worker_lines(registry: Registry) -> list[str]:
    families: dict[str, str] = {}
    state: list[str] = []
    gauges: dict[str, list[str]] = defaultdict(list)
    counters: dict[str, list[str]] = defaultdict(list)
    for name, worker in registry.workers.items():
        label = f'model="{_escape(name)}"'
        families[name] = worker.model.family
        current = worker.state
        for s in STATES:
            state.append(f'mlx_gateway_model_state{{{label},state="{s}"}} {int(s == current)}')
        gauges["in_flight"].append(f"{{{label}}} {worker.in_flight}")
        if worker.supervisor is not None:
            counters["restarts_total"].append(f"{{{label}}} {worker.supervisor.restarts}")
        if (pong := worker.pong) is not None:
            stats = pong.stats
            gauges["active"].append(f"{{{label}}} {stats.active}")
            gauges["queued"].append(f"{{{label}}} {stats.queued}")
            counters["prompt_tokens_total"].append(f"{{{label}}} {stats.prompt_tokens}")
            counters["generation_tokens_total"].append(f"{{{label}}} {stats.generation_tokens}")
            counters["jobs_finished_total"].append(f"{{{label}}} {stats.requests_finished}")
    out = [
        "# HELP mlx_gateway_model_info Each configured model and its family.",
        "# TYPE mlx_gateway_model_info gauge",
        *(
            f'mlx_gateway_model_info{{model="{_escape(n)}",family="{f}"}} 1'
            for n, f in families.items()
        ),
        "# HELP mlx_gateway_model_state 1 for the worker's current state.",
        "# TYPE mlx_gateway_model_state gauge",
        *state,
    ]
    help_text = {
        "in_flight": "Requests the gateway has sent to the worker and not seen end.",
        "active": "Jobs the worker is running (last heartbeat).",
        "queued": "Jobs waiting in the worker (last heartbeat).",
        "restarts_total": "Times the supervisor restarted the worker process.",
        "prompt_tokens_total": "Prompt tokens processed by the current worker process.",
        "generation_tokens_total": "Tokens generated by the current worker process.",
        "jobs_finished_total": "Jobs finished by the current worker process.",
    }
    for kind, series in (("gauge", gauges), ("counter", counters)):
        for metric, values in series.items():
            out.append(f"# HELP mlx_gateway_model_{metric} {help_text[metric]}")
            out.append(f"# TYPE mlx_gateway_model_{metric} {kind}")
            out.extend(f"mlx_gateway_model_{metric}{v}" for v in values)
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: Request) -> Response:
    request_metrics: RequestMetrics = request.app.state.request_metrics
    lines = request_metrics.lines() + worker_lines(request.app.state.registry)
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
