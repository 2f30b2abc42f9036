"""Text to speech: time to the first audio byte against the whole synthesis.

``python bench/tts_stream.py [--model-path models/demo-kokoro-tiny] [--repeats 3]
[--format pcm]``

A 5-sentence input, through a real stack (honcho, gateway, one supervised
Kokoro worker) with ``/v1/audio/speech``:

- streamed (``stream_format: "audio"``, the default): time to the first audio
  byte and to the last;
- not streamed (``stream: false``, the whole file at once): time to the
  response, which is also the time to its first byte;

and, for reference, kokoro-mlx's own ``KokoroTTS.generate`` on the same text
in this process (same BLAS, one thread). Medians over ``--repeats``. With
the random-weight demo model the audio is noise, but the work is the real
model's: ALBERT, duration and prosody predictors, iSTFTNet vocoder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This checkout's packages, not an installed copy's (the in-process run imports workers).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

# common loads OpenBLAS with one thread before anything imports mlx.core.
from common import ROOT, exit_on_sigterm, running_stack  # noqa: E402

TEXT = "Hi there. This is one. Then two. Now three. The end."
VOICE = "af_demo"


def through_gateway(base_url: str, fmt: str, stream: bool) -> tuple[float, float, int]:
    """(seconds to the first byte, seconds to the last, bytes)."""
    body = {"model": "tts", "input": TEXT, "voice": VOICE, "response_format": fmt}
    if not stream:
        body["stream"] = False
    started = time.perf_counter()
    first, size = None, 0
    with httpx.stream("POST", f"{base_url}/v1/audio/speech", json=body, timeout=600) as r:
        r.raise_for_status()
        for data in r.iter_bytes():
            if first is None and data:
                first = time.perf_counter() - started
            size += len(data)
    total = time.perf_counter() - started
    return first or total, total, size


def in_process(model_path: Path) -> float:
    from kokoro_mlx import KokoroTTS
    from kokoro_mlx.phonemize import Phonemizer

    from workers.engines.kokoro_cpu import use_fast_convs
    from workers.engines.kokoro_g2p import make_g2p

    use_fast_convs()  # the worker's CPU convolutions, for a like-for-like figure
    tts = KokoroTTS.from_pretrained(model_path)
    # kokoro-mlx's English G2P needs spaCy's model; give it the worker's espeak one.
    phonemizer = Phonemizer.__new__(Phonemizer)
    phonemizer._vocab = tts._config.vocab
    phonemizer._language = "en-us"
    espeak = make_g2p("espeak", "en-us")
    phonemizer._g2p = lambda text: (espeak(text).phonemes, None)
    tts._phonemizers["en-us"] = phonemizer
    started = time.perf_counter()
    tts.generate(TEXT, voice=VOICE)
    return time.perf_counter() - started


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=ROOT / "models" / "demo-kokoro-tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", default="pcm")
    args = parser.parse_args()
    if not args.model_path.is_dir():
        from demos.kokoro import ensure_demo_kokoro

        ensure_demo_kokoro(args.model_path.parent)

    results: dict[str, list[float]] = {k: [] for k in ("ttfb", "total", "whole", "inproc")}
    model = {"name": "tts", "family": "kokoro", "path": str(args.model_path),
             "options": {"g2p": "espeak"}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, running_stack([model], Path(tmp)) as stack:
        through_gateway(stack.base_url, args.format, True)  # warm-up
        for _ in range(args.repeats):
            ttfb, total, _ = through_gateway(stack.base_url, args.format, True)
            _, whole, _ = through_gateway(stack.base_url, args.format, False)
            results["ttfb"].append(ttfb)
            results["total"].append(total)
            results["whole"].append(whole)
    in_process(args.model_path)  # warm-up
    results["inproc"] = [in_process(args.model_path) for _ in range(args.repeats)]

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"input: {TEXT!r} (5 sentences), format {args.format}, {args.repeats} repeats, medians")
    streamed = f"first byte {med['ttfb']:.2f} s, last byte {med['total']:.2f} s"
    print(f"  gateway, streamed:      {streamed}")
    print(f"  gateway, stream=false:  first byte {med['whole']:.2f} s (the whole file)")
    print(f"  kokoro-mlx in-process:  generate() {med['inproc']:.2f} s")
    print(f"  first byte / whole synthesis (streamed): {med['ttfb'] / med['total']:.2f}")


if __name__ == "__main__":
    main()
