"""POST /admin/reload: re-read the config file and apply what changed.

Models added are routed at once and loaded per their ``load``; their
supervisor is started by the gateway (gateway/supervisors.py) unless one is
already connected (a Procfile entry for a model that was removed and is back).
Removed models stop being routed (404), are unloaded, and a supervisor the
gateway started is stopped; a Procfile supervisor stays, unloaded, since
honcho stops everything when one entry exits. A changed model is restarted
if what its process reads changed (path, family, options, drain_timeout;
a new endpoint needs a new connection, so it is unloaded and loaded again);
other fields (aliases, limits, ttl, pinned, load...) apply in place. The
other models are untouched. Gateway settings apply in place for the memory
budget and eviction; the rest need a restart of the gateway and are listed.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from gateway.errors import APIError
from gateway.lifecycle import ModelManager
from protocol.config import Config, ConfigError, ModelConfig, load_config
from protocol.messages import RestartModel

log = structlog.get_logger()

# Fields the model process (or its supervisor) reads when it starts.
PROCESS_FIELDS = ("family", "path", "options", "drain_timeout")
LIVE_SETTINGS = ("memory_budget", "eviction")


class ReloadResult(msgspec.Struct):
    added: list[str]
    removed: list[str]
    restarted: list[str]
    updated: list[str]
    unchanged: list[str]
    # Changed [gateway] settings that only a restart of the gateway applies.
    not_applied: list[str]


async def reload(manager: ModelManager) -> ReloadResult:
    config = manager.config
    try:
        new = load_config(config.source)
    except ConfigError as exc:
        raise APIError(400, f"the config was not reloaded: {exc}", code="invalid_config") from None
    old = {m.name: m for m in config.models}
    fresh = {m.name: m for m in new.models}
    result = ReloadResult([], [], [], [], [], _settings(config, new))
    config.models = new.models
    for key in LIVE_SETTINGS:
        setattr(config.gateway, key, getattr(new.gateway, key))
    manager.set_budget()

    removals = [_remove(manager, name) for name in old if name not in fresh]
    result.removed = [name for name in old if name not in fresh]
    await asyncio.gather(*removals)
    for name, model in fresh.items():
        before = old.get(name)
        if before is None:
            await _add(manager, model)
            result.added.append(name)
        elif before == model:
            manager.registry.workers[name].model = model
            result.unchanged.append(name)
        elif any(getattr(before, f) != getattr(model, f) for f in PROCESS_FIELDS) or (
            before.endpoint != model.endpoint
        ):
            await _restart(manager, before, model)
            result.restarted.append(name)
        else:
            manager.registry.workers[name].model = model
            result.updated.append(name)
    manager.registry.index()
    log.info("config reloaded", **{k: v for k, v in msgspec.structs.asdict(result).items() if v})
    return result


def _settings(old: Config, new: Config) -> list[str]:
    before, after = msgspec.structs.asdict(old.gateway), msgspec.structs.asdict(new.gateway)
    return [k for k in before if before[k] != after[k] and k not in LIVE_SETTINGS]


async def _add(manager: ModelManager, model: ModelConfig) -> None:
    worker = await manager.registry.add(model)
    record = manager.attach(worker)
    if not manager.control.reachable(model.name):
        record.owner = "gateway"
        await manager.supervisors.start(model.name)
    # Its supervisor's first status loads it per its ``load``; one that is
    # connected already (a Procfile entry) has been heard before: ask now.
    elif manager.loads_at_start(worker):
        manager.spawn(manager.load(model.name, wait=False, evict=False))


async def _remove(manager: ModelManager, name: str) -> None:
    worker = manager.registry.remove(name)
    record = manager.records.get(name)
    try:
        if manager.control.reachable(name) and worker.state not in ("unloaded", "down"):
            await manager.unload_worker(worker, reason="removed from the config")
    except (APIError, TimeoutError) as exc:
        log.warning("removed model did not unload cleanly", model=name, error=str(exc))
    await worker.close()
    if record is not None and record.owner == "gateway":
        await manager.supervisors.stop(name, manager.settings.shutdown_timeout)
    manager.detach(name)


async def _restart(manager: ModelManager, before: ModelConfig, model: ModelConfig) -> None:
    name = model.name
    worker = manager.registry.workers[name]
    record = manager.records[name]
    wanted = record.wanted
    if before.endpoint != model.endpoint:
        if wanted:
            await manager.unload(name, reason="its endpoint changed")
        old = manager.registry.remove(name)
        await old.close()
        worker = await manager.registry.add(model)
        worker.supervisor = old.supervisor
        manager.attach(worker)
        if wanted:
            manager.spawn(manager.load(name, wait=False))
        return
    worker.model = model
    worker.memory_peak = 0  # measured with the old path or options
    manager.attach(worker)
    if wanted and worker.state not in ("unloaded", "down"):
        manager.control.send(name, RestartModel(graceful=True))
