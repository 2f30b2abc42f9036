"""16-bit mono PCM from a speech worker, encoded as the client asked.

``pcm`` is the worker's samples as they are (OpenAI: raw 16-bit little-endian
mono, 24 kHz). ``wav`` is a RIFF header then the samples: exact sizes when
the whole audio is known, else (streamed) the 0xFFFFFFFF "unknown length"
sizes that readers take to mean "until the end". ``mp3``, ``opus`` (in Ogg,
like OpenAI's), ``aac`` (ADTS) and ``flac`` come from an ``ffmpeg`` process
fed as sentences arrive. A streamed file's header cannot hold its length
(FLAC's sample count, MP3's gapless info): decoders read such files to the
end. Without ffmpeg on PATH only pcm and wav are offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Protocol

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
ALL_FORMATS = tuple(MEDIA_TYPES)

_FFMPEG_OUTPUT = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}


class EncodingError(RuntimeError):
    pass


def _ffmpeg_command(fmt: str, sample_rate: int) -> list[str]:
    """ffmpeg reading 16-bit mono PCM on stdin, encoding to ``fmt`` (output path to add)."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        *_FFMPEG_OUTPUT[fmt],
    ]  # fmt: skip


def supported_formats() -> tuple[str, ...]:
    """The response formats this machine can produce."""
    if shutil.which("ffmpeg") is None:
        return ("wav", "pcm")
    return ALL_FORMATS


class Encoder(Protocol):
    async def feed(self, pcm: bytes) -> bytes:
        """Encode more samples; returns the encoded bytes ready so far."""

    async def finish(self) -> bytes:
        """The rest of the encoded stream."""


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM WAV header; ``None``: unknown length (streaming)."""
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


class _Raw:
    def __init__(self, header: bytes = b"") -> None:
        self._header = header

    async def feed(self, pcm: bytes) -> bytes:
        header, self._header = self._header, b""
        return header + pcm

    async def finish(self) -> bytes:
        header, self._header = self._header, b""
        return header


class _FFmpeg:
    """An ffmpeg process: PCM into stdin, the encoded stream read from stdout
    by a task as it comes, so every ``feed`` returns what is ready."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._out = bytearray()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, fmt: str, sample_rate: int) -> _FFmpeg:
        process = await asyncio.create_subprocess_exec(
            *_ffmpeg_command(fmt, sample_rate),
            "-flush_packets",
            "1",
            "pipe:1",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while chunk := await self._process.stdout.read(65536):
            self._out += chunk

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    async def feed(self, pcm: bytes) -> bytes:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(pcm)
            await self._process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EncodingError(f"ffmpeg stopped: {await self._stderr()}") from exc
        await asyncio.sleep(0)  # let the reader collect what ffmpeg wrote
        return self._take()

    async def finish(self) -> bytes:
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._process.stdin.close()
        await self._reader
        if await self._process.wait() != 0:
            raise EncodingError(f"ffmpeg failed: {await self._stderr()}")
        return self._take()

    async def _stderr(self) -> str:
        assert self._process.stderr is not None
        return (await self._process.stderr.read()).decode(errors="replace").strip()

    def close(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
        self._reader.cancel()


async def encoder(fmt: str, sample_rate: int, *, streaming: bool) -> Encoder:
    if fmt == "pcm":
        return _Raw()
    if fmt == "wav":
        return _Raw(wav_header(sample_rate, None) if streaming else b"")
    return await _FFmpeg.start(fmt, sample_rate)


async def encode_all(fmt: str, pcm: bytes, sample_rate: int) -> bytes:
    """The whole audio in ``fmt``, with the lengths a file's header holds:
    WAV sizes, FLAC's sample count, MP3's gapless (LAME) header. ffmpeg
    writes those by seeking back, so it writes to a file, not a pipe."""
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        return wav_header(sample_rate, len(pcm)) + pcm
    with tempfile.TemporaryDirectory(prefix="mlx-gateway-audio-") as folder:
        path = Path(folder) / f"speech.{fmt}"
        process = await asyncio.create_subprocess_exec(
            *_ffmpeg_command(fmt, sample_rate), "-y", str(path),
            stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, errors = await process.communicate(pcm)
        if process.returncode != 0:
            raise EncodingError(f"ffmpeg failed: {errors.decode(errors='replace').strip()}")
        return await asyncio.to_thread(path.read_bytes)


def close(enc: Encoder) -> None:
    """Stop an encoder's process if it has one (a client that went away)."""
    if isinstance(enc, _FFmpeg):
        enc.close()
