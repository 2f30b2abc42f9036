"""Framing: one version byte, then the msgpack-encoded message.

The version byte lets a gateway and a worker of different releases refuse
each other's frames with a clear log line instead of misreading them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from protocol.messages import FromWorker, SupervisorStatus, ToWorker

PROTOCOL_VERSION = 1
_VERSION_BYTE = bytes([PROTOCOL_VERSION])

T = TypeVar("T")


class FrameError(ValueError):
    """A frame that cannot be decoded: wrong version, bad msgpack, bad schema."""


class Codec(Generic[T]):
    """Encoder for any message plus a typed decoder for one direction's union.

    Build one per socket direction and reuse it (msgspec caches per instance).
    """

    def __init__(self, decode_type: type[T]) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(decode_type)

    def encode(self, message: msgspec.Struct) -> bytes:
        return _VERSION_BYTE + self._encoder.encode(message)

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


def worker_codec() -> Codec[ToWorker]:
    """What a worker decodes: jobs and control from the gateway."""
    return Codec(ToWorker)  # type: ignore[arg-type]


def gateway_codec() -> Codec[FromWorker]:
    """What the gateway decodes on a worker socket: events and heartbeats."""
    return Codec(FromWorker)  # type: ignore[arg-type]


def supervisor_codec() -> Codec[SupervisorStatus]:
    """What the gateway decodes on its control socket."""
    return Codec(SupervisorStatus)
