"""The admin API: operating models while the others keep serving.

JSON, behind an admin key when keys are configured (see gateway/middleware.py):

- ``GET /admin/models``, ``GET /admin/models/{m}``: each model's worker
  (state, pid, uptime, restarts, load, loop age, memory, ttl, last error...).
- ``POST /admin/models/{m}/load`` ``{"wait", "timeout_s", "evict"}``,
  ``/unload`` ``{"drain_timeout_s", "force", "wait"}``,
  ``/restart`` ``{"graceful"}`` (drained, or now; then a fresh process that
  re-reads the config), ``/drain`` (refuse new requests, stay loaded),
  ``/resume``; ``PATCH /admin/models/{m}`` ``{"pinned", "ttl", "max_pending"}``
  (until the next reload).
- ``GET /admin/memory``: the budget, what is reserved and free, per model.
- ``POST /admin/reload``: re-read the config (gateway/reload.py).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.admin_views import ModelViewList, memory_view, model_view
from gateway.body import read_limited
from gateway.errors import APIError
from gateway.lifecycle import ModelManager
from gateway.reload import reload
from gateway.worker_client import WorkerClient

T = TypeVar("T", bound=msgspec.Struct)


class LoadRequest(msgspec.Struct, forbid_unknown_fields=True):
    # Answer when it is ready (200), or at once (202) while it loads.
    wait: bool = True
    timeout_s: float | None = None  # default: the model's load_timeout
    # Unload idle unpinned models (least recently used first) if it does not
    # fit; default: the config's eviction.
    evict: bool | None = None


class UnloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    drain_timeout_s: float | None = None  # default: the model's drain_timeout
    force: bool = False  # running requests end now with a 503
    wait: bool = True  # answer once the process's exit is confirmed


class RestartRequest(msgspec.Struct, forbid_unknown_fields=True):
    graceful: bool = True


class PatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    pinned: bool | msgspec.UnsetType = msgspec.UNSET
    ttl: float | None | msgspec.UnsetType = msgspec.UNSET  # null: never unloaded when idle
    max_pending: int | msgspec.UnsetType = msgspec.UNSET


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.models
    return manager


async def _options(request: Request, kind: type[T]) -> T:
    body = await read_limited(request, 4096)
    try:
        return msgspec.json.decode(body, type=kind) if body.strip() else kind()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise APIError(400, f"invalid request: {exc}") from exc


def _json(data: msgspec.Struct, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def _worker(request: Request) -> WorkerClient:
    worker: WorkerClient = request.app.state.registry.resolve(request.path_params["model"])
    return worker


def _view(request: Request, worker: WorkerClient, status: int = 200) -> Response:
    return _json(model_view(_manager(request), worker), status)


async def list_models(request: Request) -> Response:
    manager = _manager(request)
    views = [model_view(manager, w) for w in manager.registry.workers.values()]
    return _json(ModelViewList(views))


async def get_model(request: Request) -> Response:
    return _view(request, _worker(request))


async def load_model(request: Request) -> Response:
    worker = _worker(request)
    options = await _options(request, LoadRequest)
    await _manager(request).load(
        worker.model.name, wait=options.wait, within=options.timeout_s, evict=options.evict
    )
    return _view(request, worker, 200 if options.wait else 202)


async def unload_model(request: Request) -> Response:
    worker = _worker(request)
    options = await _options(request, UnloadRequest)
    try:
        await _manager(request).unload(
            worker.model.name,
            drain_timeout=options.drain_timeout_s,
            force=options.force,
            wait=options.wait,
        )
    except TimeoutError:
        raise APIError(
            504, f"model {worker.model.name!r} has not exited yet; it is {worker.state}"
        ) from None
    return _view(request, worker, 200 if options.wait else 202)


async def restart_model(request: Request) -> Response:
    """Drain (or, ``{"graceful": false}``, stop now) and start a fresh process,
    which re-reads the config; as ``kill -TERM <pid>`` does, without a shell."""
    worker = _worker(request)
    options = await _options(request, RestartRequest)
    pid = _manager(request).restart(worker.model.name, graceful=options.graceful)
    body = {
        "model": worker.model.name,
        "pid": pid,
        "graceful": options.graceful,
        "state": "draining" if options.graceful else "restarting",
    }
    return Response(msgspec.json.encode(body), status_code=202, media_type="application/json")


async def drain_model(request: Request) -> Response:
    worker = _worker(request)
    _manager(request).hold(worker.model.name, True)
    return _view(request, worker)


async def resume_model(request: Request) -> Response:
    worker = _worker(request)
    _manager(request).hold(worker.model.name, False)
    return _view(request, worker)


async def patch_model(request: Request) -> Response:
    worker = _worker(request)
    patch = await _options(request, PatchRequest)
    model = worker.model
    if not isinstance(patch.max_pending, msgspec.UnsetType):
        if patch.max_pending < 1:
            raise APIError(400, "'max_pending' must be at least 1", param="max_pending")
        model.max_pending = patch.max_pending
    if not isinstance(patch.ttl, msgspec.UnsetType):
        if patch.ttl is not None and patch.ttl <= 0:
            raise APIError(400, "'ttl' must be positive (or null: never)", param="ttl")
        model.ttl = patch.ttl
    if not isinstance(patch.pinned, msgspec.UnsetType):
        model.pinned = patch.pinned
    return _view(request, worker)


async def get_memory(request: Request) -> Response:
    return _json(memory_view(_manager(request)))


async def reload_config(request: Request) -> Response:
    return _json(await reload(_manager(request)))
