"""What the memory budget counts: each model's reservation, and which models
hold one now (and could be evicted).

A model holds memory from the moment its load is admitted until its
supervisor confirms its process exited. It reserves its estimate until it
has served, then the largest footprint it reported (unless its config gives
``memory_estimate``, which always wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway import memory
from gateway.registry import Registry
from gateway.worker_client import WorkerClient


@dataclass
class ModelRecord:
    """The gateway's side of one model: what it wants and what it saw."""

    wanted: bool = False  # a loaded model process is wanted
    estimate: int = 0  # bytes, before it has served
    last_error: str = ""
    owner: Literal["external", "gateway"] = "external"  # who runs its supervisor
    supervisor_instance: str = ""


class Reservations:
    def __init__(self, registry: Registry, records: dict[str, ModelRecord]) -> None:
        self.registry = registry
        self.records = records

    def reservation(self, worker: WorkerClient) -> int:
        """Bytes the budget counts for this model when it is loaded."""
        record = self.records[worker.model.name]
        if worker.model.memory_estimate is None and worker.memory_peak > 0:
            return worker.memory_peak
        return record.estimate

    def holds(self, worker: WorkerClient) -> bool:
        record = self.records[worker.model.name]
        return record.wanted or worker.state not in ("unloaded", "down")

    def holdings(self, *, excluding: str = "") -> list[memory.Holding]:
        held = []
        for name, worker in self.registry.workers.items():
            if name == excluding or name not in self.records or not self.holds(worker):
                continue
            evictable = (
                self.records[name].wanted
                and worker.state == "ready"
                and worker.idle
                and not worker.model.pinned
            )
            held.append(memory.Holding(name, self.reservation(worker), evictable, worker.last_used))
        return held

    def reserved(self, *, excluding: str = "") -> int:
        return sum(h.reserved for h in self.holdings(excluding=excluding))
