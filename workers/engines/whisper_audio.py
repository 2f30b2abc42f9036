"""Uploaded audio bytes to Whisper's input: 16 kHz mono float32, through ffmpeg.

ffmpeg reads the bytes from a pipe, so the upload is never written to disk,
and decodes anything it knows (WAV, MP3, OGG/Opus, FLAC, M4A/MP4, WebM...),
down-mixing and resampling on the way, as mlx-whisper's own ``load_audio``
does for a file path.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16_000


class AudioDecodeError(Exception):
    """The bytes are not audio ffmpeg can read (the message says why)."""


class NoAudioDecoder(RuntimeError):
    """ffmpeg is missing: no upload can be decoded."""


def decode_audio(data: bytes, filename: str = "", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio in ``data`` as mono float32 samples at ``sample_rate``."""
    what = f"the uploaded file {filename!r}" if filename else "the uploaded file"
    if not data:
        raise AudioDecodeError(f"{what} is empty")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise NoAudioDecoder("ffmpeg is not installed (it decodes uploaded audio): install it")
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0"]
    command += ["-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    done = subprocess.run(command, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise AudioDecodeError(f"could not decode {what} as audio: {_reason(done.stderr)}")
    samples = np.frombuffer(done.stdout, dtype="<f4")
    if samples.size == 0:
        raise AudioDecodeError(f"{what} holds no audio")
    return samples.astype(np.float32)


def _reason(stderr: bytes) -> str:
    """ffmpeg's last error line, without its 'pipe:0: ' prefix."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "ffmpeg failed without a message"
    return lines[-1].removeprefix("pipe:0: ")
