"""The Starlette application: routes, middleware and the worker registry's lifetime."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from gateway import admin
from gateway.anthropic import count_tokens, messages
from gateway.chat import chat_completions
from gateway.completions import completions
from gateway.embeddings import embeddings
from gateway.errors import EXCEPTION_HANDLERS
from gateway.health import LoopMonitor, health, live, ready
from gateway.image_store import ImageStore
from gateway.images_api import image_edits, image_file, image_generations
from gateway.lifecycle import ModelManager
from gateway.metrics import metrics, metrics_registry
from gateway.middleware import APIKeyMiddleware, RequestIDMiddleware, UnhandledErrorMiddleware
from gateway.models import get_model, list_models
from gateway.openapi import openapi_json
from gateway.queue_stats import queue_stats
from gateway.rate_limit import RateLimiter, RateLimitMiddleware
from gateway.registry import Registry
from gateway.responses import (
    ResponsesState,
    cancel_response,
    count_input_tokens,
    create_response,
    delete_response,
    list_input_items,
    retrieve_response,
)
from gateway.speech import list_voices, speech
from gateway.transcriptions import transcriptions, translations
from gateway.worker_client import WorkerClient
from protocol.config import Config


def create_app(config: Config) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = Registry(config)
        manager = ModelManager(registry)
        monitor = LoopMonitor()
        app.state.registry, app.state.models, app.state.loop_monitor = registry, manager, monitor
        monitor.start()
        await registry.start()
        await manager.start()
        try:
            yield
        finally:
            await app.state.responses.close()  # background responses end first
            await manager.close()
            await registry.close()
            await monitor.close()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),  # Anthropic's Messages API
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/responses", create_response, methods=["POST"]),
        Route("/v1/responses/input_tokens", count_input_tokens, methods=["POST"]),
        Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
        Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", translations, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/voices", list_voices, methods=["GET"]),
        Route("/v1/images/generations", image_generations, methods=["POST"]),
        Route("/v1/images/edits", image_edits, methods=["POST"]),
        Route("/v1/images/files/{name}", image_file, methods=["GET"], name="image_file"),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/queue/stats", queue_stats, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/admin/models", admin.list_models, methods=["GET"]),
        Route("/admin/models/{model:path}/load", admin.load_model, methods=["POST"]),
        Route("/admin/models/{model:path}/unload", admin.unload_model, methods=["POST"]),
        Route("/admin/models/{model:path}/restart", admin.restart_model, methods=["POST"]),
        Route("/admin/models/{model:path}/drain", admin.drain_model, methods=["POST"]),
        Route("/admin/models/{model:path}/resume", admin.resume_model, methods=["POST"]),
        Route("/admin/models/{model:path}", admin.get_model, methods=["GET"]),
        Route("/admin/models/{model:path}", admin.patch_model, methods=["PATCH"]),
        Route("/admin/memory", admin.get_memory, methods=["GET"]),
        Route("/admin/reload", admin.reload_config, methods=["POST"]),
    ]
    settings = config.gateway
    registry, request_metrics, model_metrics = metrics_registry(lambda: _workers(app))
    for model in config.models:
        model_metrics.of(model.name)  # every model's series, at zero from the start
    middleware = [
        Middleware(RequestIDMiddleware, metrics=request_metrics),
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-House-ID", "X-Process-Time", "Retry-After"],
        ),
        Middleware(APIKeyMiddleware, keys=settings.api_keys, admin_keys=settings.admin_keys),
        Middleware(
            RateLimitMiddleware,
            limiter=RateLimiter.from_setting(settings.rate_limit),
            by_key=bool(settings.api_keys),
        ),
        # Innermost, so its 500s carry the request id and CORS headers too.
        Middleware(UnhandledErrorMiddleware),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.request_metrics = request_metrics
    app.state.model_metrics = model_metrics
    app.state.metrics_registry = registry
    app.state.image_store = ImageStore(settings.image_store_capacity, settings.image_url_ttl)
    app.state.responses = ResponsesState(settings)
    app.state.started = int(time.time())
    return app


def _workers(app: Starlette) -> Iterable[WorkerClient]:
    """The workers, once the app has started (its lifespan makes the registry)."""
    registry: Registry | None = getattr(app.state, "registry", None)
    return registry.workers.values() if registry is not None else ()
