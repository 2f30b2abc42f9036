"""The service's own routes in /openapi.json: health, queue stats, metrics,
this document, and the admin API (see :mod:`gateway.openapi`)."""

from __future__ import annotations

from gateway import service_schemas as service
from gateway.admin import LoadRequest, PatchRequest, RestartRequest, UnloadRequest
from gateway.admin_views import MemoryView, ModelView, ModelViewList
from gateway.openapi_operations import JSON, TEXT, Operation
from gateway.reload import ReloadResult

MODEL = "/admin/models/{model:path}"

SERVICE_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/health",
        "Each worker's state",
        "Service",
        answers={JSON: service.HealthReport},
        public=True,
    ),
    Operation(
        "GET",
        "/health/live",
        "The gateway's event loop runs",
        "Service",
        answers={JSON: service.LiveReport},
        public=True,
    ),
    Operation(
        "GET",
        "/health/ready",
        "Every startup or pinned model is ready (else 503 naming the others)",
        "Service",
        answers={JSON: service.ReadyReport},
        error=service.ReadyReport,
        public=True,
    ),
    Operation(
        "GET",
        "/v1/queue/stats",
        "Each model's active, pending and processed requests",
        "Service",
        answers={JSON: service.QueueStats},
    ),
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (OpenMetrics when asked for)",
        "Service",
        answers={"text/plain": TEXT, "application/openmetrics-text": TEXT},
        public=True,
    ),
    Operation(
        "GET",
        "/openapi.json",
        "This document",
        "Service",
        answers={JSON: {"type": "object"}},
        public=True,
    ),
    Operation(
        "GET", "/admin/models", "Every model's worker", "Admin", answers={JSON: ModelViewList}
    ),
    Operation(
        "GET", MODEL, "One model's worker, by name or alias", "Admin", answers={JSON: ModelView}
    ),
    Operation(
        "PATCH",
        MODEL,
        "Change pinned, ttl or max_pending (until the next reload)",
        "Admin",
        PatchRequest,
        {JSON: ModelView},
    ),
    Operation(
        "POST",
        f"{MODEL}/load",
        "Load a model (200 when ready; 202 with wait false; 409 insufficient_memory)",
        "Admin",
        LoadRequest,
        {JSON: ModelView},
    ),
    Operation(
        "POST",
        f"{MODEL}/unload",
        "Unload a model (drained unless forced; 200 once its process exited)",
        "Admin",
        UnloadRequest,
        {JSON: ModelView},
    ),
    Operation(
        "POST",
        f"{MODEL}/restart",
        "Drain (or stop) one model's process and start a fresh one",
        "Admin",
        RestartRequest,
        {JSON: service.RestartAccepted},
        status="202",
    ),
    Operation(
        "POST",
        f"{MODEL}/drain",
        "Refuse new requests, stay loaded",
        "Admin",
        answers={JSON: ModelView},
    ),
    Operation("POST", f"{MODEL}/resume", "Take requests again", "Admin", answers={JSON: ModelView}),
    Operation("GET", "/admin/memory", "The memory budget", "Admin", answers={JSON: MemoryView}),
    Operation(
        "POST",
        "/admin/reload",
        "Re-read the config: add, remove and restart what changed",
        "Admin",
        answers={JSON: ReloadResult},
    ),
)
