"""Which worker serves which model name (and alias)."""

from __future__ import annotations

from collections.abc import Collection

import zmq.asyncio

from gateway.errors import APIError
from gateway.worker_client import WorkerClient
from protocol.config import Config, Family, ModelConfig

# The families each kind of endpoint serves.
TEXT_FAMILIES: tuple[Family, ...] = ("llm", "vlm")


class Registry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx = zmq.asyncio.Context()
        self.workers = {m.name: WorkerClient(m, config.gateway, self.ctx) for m in config.models}
        self._by_name: dict[str, WorkerClient] = {}
        self.index()

    def index(self) -> None:
        """Map every name and alias to its worker (again, after a reload)."""
        self._by_name = {}
        for worker in self.workers.values():
            for key in (worker.model.name, *worker.model.aliases):
                self._by_name[key] = worker

    def resolve(self, name: str, families: Collection[Family] | None = None) -> WorkerClient:
        """The worker for a model name or alias; 404 ``model_not_found`` otherwise,
        400 if it is not of one of the ``families`` the endpoint serves."""
        worker = self._by_name.get(name)
        if worker is None:
            known = ", ".join(sorted(self.workers))
            raise APIError(
                404,
                f"The model {name!r} does not exist or you do not have access to it. "
                f"Models served here: {known}",
                code="model_not_found",
                param="model",
            )
        if families is not None and worker.model.family not in families:
            served = [m.name for m in self.config.models if m.family in families]
            raise APIError(
                400,
                f"model {name!r} is a {worker.model.family!r} model, which this endpoint "
                f"does not serve (it serves {', '.join(families)} models"
                + (f": {', '.join(served)})" if served else ")"),
                code="model_not_supported",
                param="model",
            )
        return worker

    async def start(self) -> None:
        for worker in self.workers.values():
            await worker.start()

    async def close(self) -> None:
        for worker in self.workers.values():
            await worker.close()
        self.ctx.term()

    async def add(self, model: ModelConfig) -> WorkerClient:
        """A model added at run time: its worker connection, routed at once."""
        worker = WorkerClient(model, self.config.gateway, self.ctx)
        await worker.start()
        self.workers[model.name] = worker
        self.index()
        return worker

    def remove(self, name: str) -> WorkerClient:
        """Stop routing to a model; the caller closes its worker connection."""
        worker = self.workers.pop(name)
        self.index()
        return worker
