"""The lifecycle manager's decisions, with the supervisors' side played by the test:
what it asks them (load, unload, kill) and what requests see meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.errors import APIError
from gateway.lifecycle import ModelManager
from gateway.registry import Registry
from gateway.worker_client import WorkerClient
from protocol.config import Config, GatewaySettings, ModelConfig
from protocol.messages import (
    CompletionJob,
    KillModel,
    LoadModel,
    Pong,
    RestartModel,
    SamplingParams,
    SupervisorState,
    SupervisorStatus,
    ToSupervisor,
    UnloadModel,
    WorkerStats,
)

GB = 10**9


class FakeControl:
    """The control link, as the supervisors would see it: every command recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ToSupervisor]] = []
        self._arrived = asyncio.Event()

    def reachable(self, model: str) -> bool:
        return True

    def send(self, model: str, command: ToSupervisor) -> bool:
        self.sent.append((model, command))
        self._arrived.set()
        return True

    async def next(self) -> tuple[str, ToSupervisor]:
        """The next command sent (waiting for it if need be)."""
        while len(self.sent) <= self._taken:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), 2)
        self._taken += 1
        return self.sent[self._taken - 1]

    _taken = 0

    async def close(self) -> None:
        pass


def entry(name: str, **kw: object) -> ModelConfig:
    return ModelConfig(
        name,
        "llm",
        "/nowhere",
        f"tcp://127.0.0.1:{abs(hash(name)) % 9000 + 1000}",
        memory_estimate="2 GB",
        **kw,
    )  # type: ignore[arg-type]


def _manager_for(
    *models: ModelConfig, budget: str = "10 GB", eviction: str = "none"
) -> ModelManager:
    settings = GatewaySettings(memory_budget=budget, eviction=eviction)  # type: ignore[arg-type]
    registry = Registry(Config(settings, list(models)))
    manager = ModelManager(registry)
    manager.control = FakeControl()  # type: ignore[assignment]
    manager.machine = {"total": 100 * GB}
    manager.set_budget()
    for worker in registry.workers.values():
        manager.attach(worker)
        worker._send_now = lambda frame: True  # type: ignore[method-assign]
    return manager


def report(manager: ModelManager, name: str, state: SupervisorState, **kw: object) -> None:
    status = SupervisorStatus(name, state, 1, 0, instance=f"sup-{name}", **kw)  # type: ignore[arg-type]
    manager._on_status(status)


def serve(worker: WorkerClient, state: str = "ready") -> None:
    """The model process has connected and answers heartbeats."""
    worker.connected = True
    worker.pong = Pong(
        0,
        f"i-{worker.model.name}",
        42,
        worker.model.name,
        "llm",
        state,
        0,  # type: ignore[arg-type]
        WorkerStats(),
    )
    worker.last_pong = time.monotonic()
    worker.changed()


def control(manager: ModelManager) -> FakeControl:
    assert isinstance(manager.control, FakeControl)
    return manager.control


def job(i: int = 1) -> CompletionJob:
    return CompletionJob(f"j{i}", "x", SamplingParams())


Factory = Callable[..., ModelManager]


@pytest.fixture
async def manager_for() -> AsyncIterator[Factory]:
    """Managers over unstarted registries; their background steps and
    sockets are gone after the test."""
    made: list[ModelManager] = []

    def make(*models: ModelConfig, **kw: str) -> ModelManager:
        made.append(_manager_for(*models, **kw))
        return made[-1]

    yield make
    for manager in made:
        for task in manager._tasks:
            task.cancel()
        await asyncio.gather(*manager._tasks, return_exceptions=True)
        manager.registry.ctx.term()


async def test_a_startup_model_is_loaded_once_its_supervisor_reports(manager_for: Factory) -> None:
    manager = manager_for(entry("a"), entry("b", load="on_demand"))
    report(manager, "a", "unloaded")
    report(manager, "b", "unloaded")
    assert await control(manager).next() == ("a", LoadModel(10 * GB))
    assert manager.registry.workers["a"].state == "loading"
    assert manager.registry.workers["b"].state == "unloaded"


async def test_a_request_for_an_on_demand_model_loads_it_and_waits_until_ready(
    manager_for: Factory,
) -> None:
    manager = manager_for(entry("lazy", load="on_demand"))
    worker = manager.registry.workers["lazy"]
    report(manager, "lazy", "unloaded")
    request = asyncio.create_task(worker.submit(job()))
    assert await control(manager).next() == ("lazy", LoadModel(10 * GB))
    assert not request.done() and worker.state == "loading"
    report(manager, "lazy", "running")
    serve(worker)
    stream = await asyncio.wait_for(request, 2)
    assert worker.in_flight == 1
    stream.close()


async def test_an_unloaded_manual_model_is_503_saying_how_to_load_it(manager_for: Factory) -> None:
    manager = manager_for(entry("m", load="manual"))
    report(manager, "m", "unloaded")
    with pytest.raises(APIError) as err:
        await manager.registry.workers["m"].submit(job())
    assert err.value.status == 503 and err.value.code == "model_not_loaded"
    assert "POST /admin/models/m/load" in err.value.message
    assert control(manager).sent == []


async def test_a_load_that_does_not_fit_is_409_naming_need_free_and_evictable(
    manager_for: Factory,
) -> None:
    manager = manager_for(entry("a"), entry("b"), entry("c", load="manual"), budget="5 GB")
    for name in "ab":
        report(manager, name, "running")
        serve(manager.registry.workers[name])
    report(manager, "c", "unloaded")
    with pytest.raises(APIError) as err:
        await manager.load("c", wait=False)
    assert err.value.status == 409 and err.value.code == "insufficient_memory"
    message = err.value.message
    assert "needs 2.00 GB" in message and "1.00 GB of the 5.00 GB" in message
    assert "a (2.00 GB)" in message and "b (2.00 GB)" in message
    assert control(manager).sent == []


async def test_lru_eviction_unloads_exactly_the_least_recently_used_idle_unpinned_model(
    manager_for: Factory,
) -> None:
    manager = manager_for(
        entry("pinned", pinned=True),
        entry("old"),
        entry("recent"),
        entry("new", load="manual"),
        budget="7 GB",
        eviction="lru",
    )
    workers = manager.registry.workers
    for name, used in (("pinned", 0.0), ("old", 1.0), ("recent", 2.0)):
        report(manager, name, "running")
        serve(workers[name])
        workers[name].last_used = used
    report(manager, "new", "unloaded")
    loading = asyncio.create_task(manager.load("new", wait=False))
    assert await control(manager).next() == ("old", UnloadModel(None, False))
    assert not loading.done()  # memory counts as free only once the exit is confirmed
    workers["old"].connected, workers["old"].pong = False, None
    report(manager, "old", "unloaded")
    await asyncio.wait_for(loading, 2)
    model, command = await control(manager).next()
    assert model == "new" and isinstance(command, LoadModel)
    assert command.memory_limit == 3 * GB  # its share: the budget less the others'
    assert workers["recent"].state == workers["pinned"].state == "ready"


async def test_an_idle_model_past_its_ttl_is_unloaded_a_busy_or_pinned_one_is_not(
    manager_for: Factory,
) -> None:
    manager = manager_for(
        entry("short", ttl=2.0), entry("busy", ttl=2.0), entry("kept", ttl=2.0, pinned=True)
    )
    workers = manager.registry.workers
    for name in workers:
        report(manager, name, "running")
        serve(workers[name])
    stream = await workers["busy"].submit(job())
    now = time.monotonic()
    assert manager.reap(now + 1.0) == []
    assert manager.reap(now + 3.0) == ["short"]
    assert await control(manager).next() == ("short", UnloadModel(None, False))
    stream.close()


async def test_a_silent_worker_fails_its_requests_at_once_and_is_killed_once(
    manager_for: Factory,
) -> None:
    manager = manager_for(entry("stuck", heartbeat_timeout=1.0))
    worker = manager.registry.workers["stuck"]
    report(manager, "stuck", "running")
    serve(worker)
    stream = await worker.submit(job())
    worker.last_pong -= 2.0  # its loop stopped answering two seconds ago
    assert worker.state == "unresponsive"
    worker._on_silence()
    worker._on_silence()
    with pytest.raises(APIError) as failure:
        [event async for event in stream.events()]
    assert failure.value.status == 503 and "stuck" in failure.value.message
    assert control(manager).sent == [("stuck", KillModel(42, "no heartbeat for 1s"))]
    with pytest.raises(APIError) as err:
        await worker.submit(job(2))
    assert err.value.status == 503 and "unresponsive" in err.value.message


async def test_a_crash_looping_model_is_failed_with_retry_after(manager_for: Factory) -> None:
    manager = manager_for(entry("crashy"))
    report(manager, "crashy", "failed", message="model process exited with code 1", retry_in=7.5)
    with pytest.raises(APIError) as err:
        await manager.registry.workers["crashy"].submit(job())
    assert err.value.status == 503 and "exited with code 1" in err.value.message
    assert err.value.headers["Retry-After"] == "8"
    assert manager.records["crashy"].last_error == "model process exited with code 1"


async def test_loading_a_model_whose_weights_failed_starts_a_new_process(
    manager_for: Factory,
) -> None:
    manager = manager_for(entry("broken"))
    worker = manager.registry.workers["broken"]
    report(manager, "broken", "running")
    serve(worker, "failed")
    assert worker.state == "failed"
    await manager.load("broken", wait=False)
    assert control(manager).sent == [("broken", RestartModel(graceful=False))]
