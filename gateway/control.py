"""The gateway's end of the supervisors' control link.

A ROUTER bound on ``control_endpoint``; each supervisor's DEALER connects and
sends its :class:`SupervisorStatus` (on every transition and every second),
and the gateway sends lifecycle commands back to the sender of a model's
latest status. ROUTER_MANDATORY makes a command for a supervisor that is gone
fail here, so the caller can answer a 503 instead of waiting for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import cast

import structlog
import zmq
import zmq.asyncio

from protocol.framing import Encoder, FrameError, status_decoder
from protocol.messages import SupervisorStatus, ToSupervisor

log = structlog.get_logger()

# A supervisor silent this long (it reports every second) is gone.
STALE_AFTER_S = 5.0


class ControlLink:
    def __init__(
        self,
        endpoint: str,
        ctx: zmq.asyncio.Context,
        on_status: Callable[[SupervisorStatus], None],
    ) -> None:
        self.endpoint = endpoint
        self._ctx = ctx
        self._on_status = on_status
        self._decoder = status_decoder()
        self._encoder = Encoder()
        # model -> (the ROUTER identity of its supervisor, when last heard)
        self._peers: dict[str, tuple[bytes, float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._sock.bind(self.endpoint)
        self._task = asyncio.create_task(self._receive())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._sock.close(linger=0)

    def reachable(self, model: str) -> bool:
        peer = self._peers.get(model)
        return peer is not None and time.monotonic() - peer[1] < STALE_AFTER_S

    def send(self, model: str, command: ToSupervisor) -> bool:
        """Send a command to the model's supervisor; False if it is not reachable."""
        if not self.reachable(model):
            return False
        identity = self._peers[model][0]
        frames = [identity, self._encoder.encode(command)]
        sent = cast("asyncio.Future[object]", self._sock.send_multipart(frames, zmq.NOBLOCK))
        if not sent.done() or sent.exception() is not None:
            log.warning("supervisor unreachable", model=model, error=repr(sent.exception()))
            self._peers.pop(model, None)
            return False
        return True

    async def _receive(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2:
                log.error("dropped control message with a bad envelope")
                continue
            identity, frame = frames
            try:
                status = self._decoder.decode(frame)
            except FrameError as exc:
                log.error("dropped bad control frame", error=str(exc))
                continue
            self._peers[status.model] = (identity, time.monotonic())
            self._on_status(status)
