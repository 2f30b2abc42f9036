"""What the admin API shows: one model's worker, and the memory budget.

The shapes are msgspec Structs, so they document themselves (and can be
turned into a schema). The console reads them; scale-out (workers on other
hosts, replicas) keeps every field and adds to them, which is why ``host``
is here already.
"""

from __future__ import annotations

import time

import msgspec

from gateway.lifecycle import ModelManager
from gateway.worker_client import WorkerClient


class ModelMemory(msgspec.Struct):
    # The process now (its last heartbeat); None when no process runs.
    rss: int | None
    mlx_active: int | None
    mlx_peak: int | None
    # Before it has served: from its weights and options (or memory_estimate).
    estimate: int
    # The largest footprint it reported after serving; None before.
    measured_peak: int | None
    # What the budget counts for it now (0 once its exit is confirmed).
    reserved: int


class SupervisorView(msgspec.Struct):
    state: str | None  # as it reported it; None: never heard from
    instance: str | None
    owner: str  # "external" (Procfile, another host) or "gateway" (added by a reload)


class ModelView(msgspec.Struct):
    name: str
    family: str
    aliases: list[str]
    state: str
    host: str | None
    pid: int | None
    uptime_s: float | None
    restarts: int
    in_flight: int
    active: int | None
    queued: int | None
    processed: int
    # Seconds since its generation loop last answered a heartbeat.
    loop_age_s: float | None
    memory: ModelMemory
    load: str
    pinned: bool
    ttl: float | None
    max_pending: int
    heartbeat_timeout: float
    load_timeout: float
    # Unix time of its last request (start or end); None: none yet.
    last_used: float | None
    idle_s: float
    last_error: str | None
    # restarting / failed: seconds until its supervisor tries again.
    retry_in_s: float | None
    supervisor: SupervisorView


class ModelViewList(msgspec.Struct):
    data: list[ModelView]
    object: str = "list"


class MemoryEntry(msgspec.Struct):
    state: str
    reserved: int
    # What it reserves when loaded: its measured peak once it has served, else the estimate.
    need: int
    estimate: int
    measured_peak: int | None
    rss: int | None
    pinned: bool
    # Idle, unpinned and loaded: what a load with eviction may unload.
    evictable: bool


class MemoryView(msgspec.Struct):
    budget: int
    reserved: int
    free: int
    # "config", "recommended_working_set" (90% of MLX's, Apple silicon) or "ram" (80%).
    source: str
    eviction: str
    models: dict[str, MemoryEntry]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def model_view(manager: ModelManager, worker: WorkerClient) -> ModelView:
    model, pong, sup = worker.model, worker.pong, worker.supervisor
    record = manager.records.get(model.name)
    stats = pong.stats if pong is not None else None
    now = time.monotonic()
    holds = manager.reservations.holds(worker)
    used = worker.last_used if worker.processed or worker.in_flight else None
    return ModelView(
        name=model.name,
        family=model.family,
        aliases=list(model.aliases),
        state=worker.state,
        host=(sup.host or None) if sup is not None else None,
        pid=pong.pid if pong is not None else (sup.pid if sup is not None else None),
        uptime_s=_round(sup.uptime + (now - worker.supervisor_at) if sup and sup.uptime else None),
        restarts=sup.restarts if sup is not None else 0,
        in_flight=worker.in_flight,
        active=stats.active if stats else None,
        queued=stats.queued if stats else None,
        processed=worker.processed,
        loop_age_s=_round(worker.loop_age),
        memory=ModelMemory(
            rss=stats.rss_bytes if stats else None,
            mlx_active=stats.mlx_active_bytes if stats else None,
            mlx_peak=stats.mlx_peak_bytes if stats else None,
            estimate=record.estimate if record else 0,
            measured_peak=worker.memory_peak or None,
            reserved=manager.reservations.reservation(worker) if holds and record else 0,
        ),
        load=model.load,
        pinned=model.pinned,
        ttl=model.ttl,
        max_pending=model.max_pending,
        heartbeat_timeout=model.heartbeat_limit(),
        load_timeout=model.load_limit(),
        last_used=_round(time.time() - (now - used)) if used is not None else None,
        idle_s=round(0.0 if worker.in_flight else now - worker.last_used, 3),
        last_error=(record.last_error if record else "") or None,
        retry_in_s=_round(worker.retry_in()),
        supervisor=SupervisorView(
            sup.state if sup is not None else None,
            (sup.instance or None) if sup is not None else None,
            record.owner if record else "external",
        ),
    )


def memory_view(manager: ModelManager) -> MemoryView:
    held = {h.name: h for h in manager.reservations.holdings()}
    entries = {}
    for name, worker in manager.registry.workers.items():
        record = manager.records.get(name)
        if record is None:
            continue
        holding = held.get(name)
        entries[name] = MemoryEntry(
            state=worker.state,
            reserved=holding.reserved if holding else 0,
            need=manager.reservations.reservation(worker),
            estimate=record.estimate,
            measured_peak=worker.memory_peak or None,
            rss=worker.pong.stats.rss_bytes if worker.pong is not None else None,
            pinned=worker.model.pinned,
            evictable=holding.evictable if holding else False,
        )
    reserved = sum(h.reserved for h in held.values())
    budget = manager.budget
    return MemoryView(
        budget=budget.bytes,
        reserved=reserved,
        free=budget.bytes - reserved,
        source=budget.source,
        eviction=manager.settings.eviction,
        models=entries,
    )
