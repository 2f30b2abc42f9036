"""Framing: one version byte, then the msgpack-encoded message.

The version byte lets a gateway and a worker of different releases refuse
each other's frames with a clear log line instead of misreading them.

Every side writes with the one :class:`Encoder`; each reads with the
:class:`Decoder` named for what it reads: a worker :func:`to_worker_decoder`,
the gateway :func:`from_worker_decoder` on a worker socket and
:func:`status_decoder` on its control socket, and a supervisor
:func:`command_decoder` on its end of that link.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from protocol.messages import FromWorker, SupervisorStatus, ToSupervisor, ToWorker

PROTOCOL_VERSION = 1
_VERSION_BYTE = bytes([PROTOCOL_VERSION])

T = TypeVar("T")


class FrameError(ValueError):
    """A frame that cannot be decoded: wrong version, bad msgpack, bad schema."""


class Encoder:
    """Frames any message. Build one per socket and reuse it (msgspec caches per instance)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()

    def encode(self, message: msgspec.Struct) -> bytes:
        return _VERSION_BYTE + self._encoder.encode(message)


class Decoder(Generic[T]):
    """Reads the frames of one direction: its union of messages, typed."""

    def __init__(self, decode_type: type[T]) -> None:
        self._decoder = msgspec.msgpack.Decoder(decode_type)

    def decode(self, frame: bytes) -> T:
        if not frame:
            raise FrameError("empty frame")
        if frame[0] != PROTOCOL_VERSION:
            raise FrameError(
                f"protocol version {frame[0]} not supported (this side speaks {PROTOCOL_VERSION})"
            )
        try:
            return self._decoder.decode(memoryview(frame)[1:])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise FrameError(str(exc)) from exc


def to_worker_decoder() -> Decoder[ToWorker]:
    """What a worker reads: jobs and control from the gateway."""
    return Decoder(ToWorker)  # type: ignore[arg-type]


def from_worker_decoder() -> Decoder[FromWorker]:
    """What the gateway reads on a worker socket: events, heartbeats, goodbyes."""
    return Decoder(FromWorker)  # type: ignore[arg-type]


def status_decoder() -> Decoder[SupervisorStatus]:
    """What the gateway reads on its control socket: the supervisors' status."""
    return Decoder(SupervisorStatus)


def command_decoder() -> Decoder[ToSupervisor]:
    """What a supervisor reads on its control link: commands from the gateway."""
    return Decoder(ToSupervisor)  # type: ignore[arg-type]
