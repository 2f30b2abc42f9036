"""Transcription latency, gateway vs mlx-whisper in-process, and whether the
worker keeps answering heartbeats while it transcribes.

    python bench/transcription.py [--seconds 20] [--repeats 3]

Speech: espeak-ng reading a bundled text, cut to ``--seconds``, as WAV. Model:
the demo Whisper (random weights; each window bounded by ``sample_len`` 8 and
no temperature fallback, as in the tests). In-process: ``mlx_whisper.transcribe``
on the same decoded samples with the same options. Gateway: the openai SDK,
``response_format="json"``, against a real stack; meanwhile ``/health`` is
polled every 50 ms and the largest gap between heartbeat answers (the worker's
``steps`` counter advancing) is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, running_stack  # noqa: I001 (preloads OpenBLAS)

TEXT = (ROOT / "demos" / "corpus.txt").read_text()[:2000]
OPTIONS = {"sample_len": 8, "temperature_fallback": False, "language": "en"}


def speech(seconds: float, folder: Path) -> bytes:
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), TEXT], check=True)
    cut = ["ffmpeg", "-loglevel", "error", "-nostdin", "-y", "-i", str(raw)]
    subprocess.run([*cut, "-t", str(seconds), str(wav)], check=True)
    return wav.read_bytes()


def in_process(model: Path, audio: bytes, repeats: int) -> list[float]:
    import mlx.core as mx
    from mlx_whisper.load_models import load_model
    from mlx_whisper.transcribe import ModelHolder, transcribe

    from workers.engines.whisper_audio import decode_audio

    whisper = load_model(str(model), dtype=mx.float32)
    whisper.set_dtype(mx.float32)
    ModelHolder.model, ModelHolder.model_path = whisper, str(model)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        transcribe(
            mx.array(decode_audio(audio)),
            path_or_hf_repo=str(model),
            temperature=0.0,
            language="en",
            sample_len=8,
            fp16=False,
        )
        times.append(time.perf_counter() - started)
    return times


def through_gateway(
    model: Path, audio: bytes, repeats: int, folder: Path
) -> tuple[list[float], float]:
    import openai

    entry = {"name": "whisper", "family": "whisper", "path": str(model), "options": OPTIONS}
    with running_stack([entry], folder) as stack:
        gaps: list[float] = []
        done = threading.Event()

        def watch() -> None:
            last_steps, last_change = -1, time.perf_counter()
            while not done.is_set():
                steps = stack.health()["models"]["whisper"].get("loop_steps") or 0
                now = time.perf_counter()
                if steps != last_steps:
                    gaps.append(now - last_change)
                    last_steps, last_change = steps, now
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        times = []
        with openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused") as client:
            for _ in range(repeats):
                started = time.perf_counter()
                client.audio.transcriptions.create(model="whisper", file=("s.wav", audio))
                times.append(time.perf_counter() - started)
        done.set()
        watcher.join()
        return times, max(gaps[1:], default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from demos.whisper import ensure_demo_whisper

    model = ensure_demo_whisper(ROOT / "models")
    with tempfile.TemporaryDirectory() as tmp:
        audio = speech(args.seconds, Path(tmp))
        local = in_process(model, audio, args.repeats)
        remote, gap = through_gateway(model, audio, args.repeats, Path(tmp))
    print(f"{args.seconds:.0f} s of speech, demo Whisper, median of {args.repeats}:")
    print(f"  in-process mlx_whisper.transcribe: {statistics.median(local):.2f} s")
    print(f"  gateway (openai SDK, json):        {statistics.median(remote):.2f} s")
    print(f"  longest gap between worker loop steps seen by /health: {gap * 1000:.0f} ms")


if __name__ == "__main__":
    main()
