"""Which models are loaded, and when.

The gateway decides; each model's supervisor carries it out over the control
link (gateway/control.py). Loads are admitted against the memory budget
(gateway/memory.py), evicting idle unpinned models least recently used first
when ``eviction = "lru"`` (or a load asks to). A request for an unloaded
``on_demand`` model loads it and waits, up to its ``load_timeout``; an
unloaded ``manual`` model answers 503 saying how to load it. An idle model
past its ``ttl`` is unloaded. A worker silent past its ``heartbeat_timeout``
is killed by its supervisor (``KillModel``) and started again.

Memory counts as released only when the supervisor confirms the process
exited (state ``unloaded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from gateway import memory
from gateway.control import ControlLink
from gateway.errors import APIError
from gateway.registry import Registry
from gateway.reservations import ModelRecord, Reservations
from gateway.supervisors import SupervisorProcesses
from gateway.worker_client import WorkerClient
from protocol.messages import (
    KillModel,
    LoadModel,
    Pong,
    RestartModel,
    SupervisorStatus,
    UnloadModel,
)

log = structlog.get_logger()

REAP_EVERY_S = 0.25
# Beyond the drain itself: the supervisor's SIGINT grace and SIGKILL.
UNLOAD_GRACE_S = 10.0


class ModelManager:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.config = registry.config
        self.settings = registry.config.gateway
        self.control = ControlLink(self.settings.control_endpoint, registry.ctx, self._on_status)
        self.supervisors = SupervisorProcesses(self.config.source)
        self.records: dict[str, ModelRecord] = {}
        self.reservations = Reservations(registry, self.records)
        self.machine: dict[str, int] = {}
        self.budget = memory.Budget(0, "ram")
        self._admission = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None

    # --- lifetime -------------------------------------------------------------

    async def start(self) -> None:
        self.machine = await memory.machine_memory()
        self.set_budget()
        for worker in self.registry.workers.values():
            self.attach(worker)
        await self.control.start()
        self._reaper = asyncio.create_task(self._reap_forever())

    async def close(self) -> None:
        tasks = [t for t in (self._reaper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.control.close()
        await self.supervisors.close(self.settings.shutdown_timeout)

    def set_budget(self) -> None:
        self.budget = memory.budget(self.settings, self.machine)
        log.info("memory budget", bytes=self.budget.bytes, source=self.budget.source)

    def attach(self, worker: WorkerClient) -> ModelRecord:
        model = worker.model
        record = self.records.setdefault(model.name, ModelRecord())
        record.estimate = memory.estimate(model)
        worker.on_demand = self._on_demand
        worker.on_hung = self._on_hung
        return record

    def detach(self, name: str) -> None:
        self.records.pop(name, None)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a lifecycle step in the background (its failure is logged)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("lifecycle step failed", error=str(exc))

    # --- what supervisors say -------------------------------------------------

    def _on_status(self, status: SupervisorStatus) -> None:
        worker = self.registry.workers.get(status.model)
        record = self.records.get(status.model)
        if worker is None or record is None:
            return  # the supervisor of a model no longer in the config
        first = status.instance != record.supervisor_instance
        record.supervisor_instance = status.instance
        worker.supervisor = status
        if status.state in ("restarting", "failed") and status.message:
            record.last_error = status.message
        if first:
            self._reconcile(worker, record, status)

    def _reconcile(
        self, worker: WorkerClient, record: ModelRecord, status: SupervisorStatus
    ) -> None:
        """A supervisor we have not heard before (it or the gateway started)."""
        if status.state in ("running", "restarting", "failed"):
            record.wanted = True  # it runs already (the gateway was restarted): adopt it
        elif status.state == "unloaded" and (record.wanted or self.loads_at_start(worker)):
            record.wanted = False  # wanted, but this supervisor runs nothing yet: load
            self.spawn(self.load(worker.model.name, wait=False, evict=False))

    @staticmethod
    def loads_at_start(worker: WorkerClient) -> bool:
        model = worker.model
        return model.load == "startup" or (model.pinned and model.load == "on_demand")

    # --- load -----------------------------------------------------------------

    async def load(
        self,
        name: str,
        *,
        wait: bool = True,
        within: float | None = None,
        evict: bool | None = None,
    ) -> None:
        """Load a model (admitted against the budget, evicting if allowed);
        with ``wait``, until it is ready (503 if it fails, 504 after ``within``
        seconds, default its load_timeout)."""
        worker = self._worker(name)
        name = worker.model.name
        record = self.records[name]
        limit = worker.model.load_limit() if within is None else within
        if worker.state == "unloading":
            await self._until(worker, lambda s: s != "unloading", self._unload_time(worker))
        state = worker.state
        if state in ("unloaded", "down"):
            await self._admit(worker, record, evict)
        elif state == "failed" and worker.pong is not None:
            # Its weights did not load and the process waits, failed: a new one tries again.
            failed = worker.pong.instance
            if not self.control.send(name, RestartModel(graceful=False)):
                raise self._no_supervisor(name)

            def replaced(_: str) -> bool:
                return worker.pong is None or worker.pong.instance != failed

            if wait:
                await self._until(worker, replaced, limit)
                worker.loading = True
                self.spawn(self._watch_load(worker))
        elif state in ("restarting", "failed") and record.wanted:
            # Try again now, rather than after the supervisor's backoff.
            if not self.control.send(name, LoadModel(self._limit_for(name))):
                raise self._no_supervisor(name)
            worker.loading = True
            worker.changed()
            self.spawn(self._watch_load(worker))
        if wait:
            await self._wait_loaded(worker, limit)

    async def _admit(self, worker: WorkerClient, record: ModelRecord, evict: bool | None) -> None:
        name = worker.model.name
        async with self._admission:
            if worker.state not in ("unloaded", "down") or record.wanted:
                return  # another request got here first
            if not self.control.reachable(name):
                raise self._no_supervisor(name)
            allowed = self.settings.eviction == "lru" if evict is None else evict
            need = self.reservations.reservation(worker)
            plan = memory.plan_load(
                need, self.budget.bytes, self.reservations.holdings(excluding=name), evict=allowed
            )
            if not plan.fits:
                record.last_error = plan.refusal(name, allowed)
                log.warning("load refused", model=name, reason=record.last_error)
                raise APIError(409, record.last_error, code="insufficient_memory")
            for victim in plan.evict:
                log.info("evicting", model=victim, for_model=name)
                self.records[victim].last_error = f"evicted to make room for {name!r}"
                await self.unload(victim, reason=f"evicted for {name}")
            record.wanted, record.last_error = True, ""
            worker.loading = True
            worker.last_used = time.monotonic()
            if not self.control.send(name, LoadModel(self._limit_for(name))):
                record.wanted = worker.loading = False
                raise self._no_supervisor(name)
            log.info("loading", model=name, reserved=need)
            worker.changed()
        self.spawn(self._watch_load(worker))

    def _limit_for(self, name: str) -> int:
        """The process's memory share: the budget less what the others reserve."""
        return max(0, self.budget.bytes - self.reservations.reserved(excluding=name))

    async def _watch_load(self, worker: WorkerClient) -> None:
        """Ends the ``loading`` of a load: ready, failed, unloaded, or too slow."""
        try:
            done = {"ready", "failed", "unloaded", "draining", "unresponsive"}
            await self._until(worker, lambda s: s in done, worker.model.load_limit())
            if worker.state == "ready":
                worker.last_used = time.monotonic()
        except TimeoutError:
            record = self.records.get(worker.model.name)
            if record is not None:
                record.last_error = f"did not load within {worker.model.load_limit():.0f}s"
        finally:
            worker.loading = False
            worker.changed()

    async def _wait_loaded(self, worker: WorkerClient, seconds: float) -> None:
        name = worker.model.name
        try:
            await self._until(worker, lambda s: not self._loading(worker, s), seconds)
        except TimeoutError:
            raise APIError(
                504,
                f"model {name!r} did not finish loading within {seconds:.0f}s; it is "
                f"{worker.state}",
                code="load_timeout",
                headers={"Retry-After": "5"},
            ) from None
        if worker.state not in ("ready", "draining"):
            raise worker.unavailable()

    @staticmethod
    def _loading(worker: WorkerClient, state: str) -> bool:
        """A load is still under way (a new process passes by "restarting")."""
        return state in ("loading", "unloaded") or (state == "restarting" and worker.loading)

    async def _on_demand(self, worker: WorkerClient) -> None:
        """Before a request's jobs are sent to a worker that is not ready."""
        name = worker.model.name
        state = worker.state
        if state == "unloaded":
            if worker.model.load == "manual":
                raise APIError(503, worker.unavailable_reason(), code="model_not_loaded")
            await self.load(name, wait=False)
        elif state != "loading":
            return  # the caller answers the 503 for this state
        limit = worker.model.load_limit()
        try:
            await self._until(worker, lambda s: s != "loading", limit)
        except TimeoutError:
            raise APIError(
                503,
                f"model {name!r} is still loading after {limit:.0f}s (its load_timeout)",
                code="model_not_ready",
                headers={"Retry-After": "5"},
            ) from None

    # --- unload, restart, drain --------------------------------------------

    async def unload(
        self,
        name: str,
        *,
        drain_timeout: float | None = None,
        force: bool = False,
        wait: bool = True,
        reason: str = "requested",
    ) -> None:
        """Stop the model process (drained first unless ``force``); with
        ``wait``, until its supervisor confirms it exited."""
        worker = self._worker(name)
        await self.unload_worker(
            worker, drain_timeout=drain_timeout, force=force, wait=wait, reason=reason
        )

    async def unload_worker(
        self,
        worker: WorkerClient,
        *,
        drain_timeout: float | None = None,
        force: bool = False,
        wait: bool = True,
        reason: str = "requested",
    ) -> None:
        name = worker.model.name
        if name in self.records:
            self.records[name].wanted = False
        worker.loading = False
        if worker.state in ("unloaded", "down") and not self.control.reachable(name):
            return
        if worker.state == "unloaded":
            return
        if not self.control.send(name, UnloadModel(drain_timeout, force)):
            raise self._no_supervisor(name)
        log.info("unloading", model=name, reason=reason, force=force)
        worker.changed()
        if wait:
            seconds = self._unload_time(worker, drain_timeout)
            await self._until(worker, lambda s: s in ("unloaded", "down"), seconds)

    def _unload_time(self, worker: WorkerClient, drain: float | None = None) -> float:
        return (drain if drain is not None else worker.model.drain_timeout) + UNLOAD_GRACE_S

    def restart(self, name: str, *, graceful: bool) -> int | None:
        """Replace the model process (drained first unless not ``graceful``); the pid it had."""
        worker = self._worker(name)
        name = worker.model.name
        if worker.state in ("unloaded", "unloading"):
            raise APIError(
                409, f"model {name!r} is {worker.state}: load it instead", code="model_not_loaded"
            )
        pid = worker.pong.pid if worker.pong is not None else None
        if worker.supervisor is not None and pid is None:
            pid = worker.supervisor.pid
        if self.control.send(name, RestartModel(graceful)):
            return pid
        return worker.restart(graceful=graceful)  # no supervisor link: ask the process

    def hold(self, name: str, held: bool) -> None:
        """Drain (new requests are refused; it stays loaded) or resume."""
        worker = self._worker(name)
        worker.held = held
        worker.changed()

    def _on_hung(self, worker: WorkerClient, pong: Pong) -> None:
        name = worker.model.name
        reason = f"no heartbeat for {worker.model.heartbeat_limit():.0f}s"
        self.records[name].last_error = f"unresponsive ({reason}); killed and restarted"
        if not self.control.send(name, KillModel(pong.pid, reason)):
            log.error("cannot kill a hung worker: no supervisor", model=name, pid=pong.pid)

    # --- idle unload ----------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            self.reap()

    def reap(self, now: float | None = None) -> list[str]:
        """Unload every model idle past its ``ttl``; the names unloaded."""
        now = time.monotonic() if now is None else now
        expired = []
        for name, worker in list(self.registry.workers.items()):
            ttl, record = worker.model.ttl, self.records.get(name)
            if ttl is None or worker.model.pinned or record is None or not record.wanted:
                continue
            if worker.state == "ready" and worker.idle and now - worker.last_used >= ttl:
                expired.append(name)
                self.spawn(self.unload(name, wait=False, reason=f"idle for {ttl:g}s (ttl)"))
        return expired

    # --- helpers --------------------------------------------------------------

    def _worker(self, name: str) -> WorkerClient:
        return self.registry.resolve(name)

    def _no_supervisor(self, name: str) -> APIError:
        return APIError(
            503,
            f"model {name!r} cannot be loaded or unloaded now: its supervisor is not "
            "connected to the gateway",
            code="model_not_ready",
            headers={"Retry-After": "2"},
        )

    async def _until(
        self, worker: WorkerClient, done: Callable[[str], bool], seconds: float
    ) -> None:
        """Wait until ``done(worker.state)``; TimeoutError after ``seconds``."""
        async with asyncio.timeout(seconds):
            while not done(worker.state):
                # States also change with time (a silent worker): look again
                # at least every second, not only on events.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await worker.wait_changed()
