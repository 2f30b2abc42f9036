"""Which worker serves which model name, and what its supervisor reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

import structlog
import zmq
import zmq.asyncio

from gateway.errors import APIError
from gateway.worker_client import WorkerClient
from protocol.config import Config, Family
from protocol.framing import FrameError, status_decoder

log = structlog.get_logger()


# The families each kind of endpoint serves.
TEXT_FAMILIES: tuple[Family, ...] = ("llm", "vlm")


class Registry:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx = zmq.asyncio.Context()
        self.workers = {m.name: WorkerClient(m, config.gateway, self._ctx) for m in config.models}
        self._by_name: dict[str, WorkerClient] = {}
        for worker in self.workers.values():
            for key in (worker.model.name, *worker.model.aliases):
                self._by_name[key] = worker
        self._control_task: asyncio.Task[None] | None = None

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
        self._control = self._ctx.socket(zmq.PULL)
        self._control.setsockopt(zmq.LINGER, 0)
        self._control.bind(self.config.gateway.control_endpoint)
        self._control_task = asyncio.create_task(self._receive_status())
        for worker in self.workers.values():
            await worker.start()

    async def close(self) -> None:
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_task
            self._control.close(linger=0)
        for worker in self.workers.values():
            await worker.close()
        self._ctx.term()

    async def _receive_status(self) -> None:
        codec = status_decoder()
        while True:
            frame = await self._control.recv()
            try:
                status = codec.decode(frame)
            except FrameError as exc:
                log.error("dropped bad control frame", error=str(exc))
                continue
            worker = self.workers.get(status.model)
            if worker is not None:
                worker.supervisor = status
