"""Shared fixtures. OpenBLAS is loaded first, with one thread, exactly as the
supervisor launches workers, so in-process reference generations run on the
same BLAS as the workers (a 2e-5 difference can flip a greedy argmax)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workers.blas import preload_openblas  # noqa: E402

preload_openblas()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_models() -> dict[str, Path]:
    """The offline demo models (created once, under the repo's models/)."""
    from demos.llm import ensure_demo_models

    paths = ensure_demo_models(ROOT / "models")
    return {p.name: p for p in paths}


@pytest.fixture(scope="session")
def demo_vlm() -> Path:
    """The offline demo vision-language model (under the repo's models/)."""
    from demos.vlm import ensure_demo_vlm

    return ensure_demo_vlm(ROOT / "models")


@pytest.fixture(scope="session")
def demo_whisper() -> Path:
    """The offline demo Whisper model (under the repo's models/)."""
    from demos.whisper import ensure_demo_whisper

    return ensure_demo_whisper(ROOT / "models")


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real speech ("hello world", by espeak-ng) as WAV, MP3 and OGG/Vorbis bytes."""
    import subprocess

    folder = tmp_path_factory.mktemp("speech")
    wav = folder / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello world"], check=True)
    files = {"wav": wav.read_bytes()}
    for ext in ("mp3", "ogg"):
        out = folder / f"hello.{ext}"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-i", str(wav), str(out)],
            check=True,
        )
        files[ext] = out.read_bytes()
    return files


@pytest.fixture(scope="session")
def demo_kokoro() -> Path:
    """The offline demo Kokoro text-to-speech model (under the repo's models/)."""
    from demos.kokoro import ensure_demo_kokoro

    return ensure_demo_kokoro(ROOT / "models")


def png_data_url(width: int = 40, height: int = 60, seed: int = 0) -> str:
    """A data URL of a small random RGB PNG."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height, seed)).decode()


@pytest.fixture(scope="session")
def demo_flux() -> Path:
    """The offline demo image model, FLUX.2-klein shaped (under the repo's models/)."""
    from demos.flux import ensure_demo_flux

    return ensure_demo_flux(ROOT / "models")


def png_bytes(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A small random RGB PNG."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def mask_png(width: int, height: int, edit_from_x: int = 0) -> bytes:
    """An RGBA mask: opaque (keep) left of ``edit_from_x``, transparent (edit) from there."""
    import io

    import numpy as np
    from PIL import Image

    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[:, :edit_from_x] = 255
    rgba = np.dstack([np.zeros((height, width, 3), dtype=np.uint8), alpha])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()
