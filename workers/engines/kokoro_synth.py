"""One Kokoro forward pass that also returns the per-phoneme durations.

``kokoro_mlx.KokoroModel.forward`` computes ``pred_dur`` (frames per input
token, from the duration predictor) to build its alignment matrix, then
returns only the audio. This is the same computation, written with the
model's own modules, returning both: the durations are what the phoneme,
word and viseme timings are made of. One frame is ``FRAME_SAMPLES`` samples
and the audio is exactly ``sum(durations) * FRAME_SAMPLES`` samples long, so
timings need no estimating.

Kept in step with kokoro-mlx 0.1.4's ``KokoroModel.forward``;
``tests/workers/test_kokoro_engine.py`` checks the audio is identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

SAMPLE_RATE = 24_000
# The decoder upsamples each duration frame 2x, the vocoder by 10 * 6 * 5 (hop):
# 600 samples = 25 ms at 24 kHz.
FRAME_SAMPLES = 600
# Kokoro's context is 512 tokens: 510 phonemes plus a pad at each end.
MAX_PHONEMES = 510


def seconds(frames: np.ndarray) -> np.ndarray:
    """Frame counts as seconds, to the microsecond (25 ms a frame)."""
    return np.round(frames * (FRAME_SAMPLES / SAMPLE_RATE), 6)


@dataclass
class Synthesis:
    """A piece's audio (float32, 24 kHz) and the frames each input token got:
    ``durations[0]`` and ``durations[-1]`` are the pads around the phonemes."""

    audio: np.ndarray
    durations: np.ndarray


def token_ids(vocab: dict[str, int], phonemes: str) -> tuple[list[int], str]:
    """The model's ids for a phoneme string and the symbols they stand for
    (symbols outside the vocabulary are dropped, as kokoro-mlx does)."""
    kept = "".join(c for c in phonemes if c in vocab)
    return [vocab[c] for c in kept], kept


def synthesize(model: Any, ids: list[int], style: mx.array, speed: float) -> Synthesis:
    """Audio for ``ids`` (no pads) with a (1, 256) ``style``; ``speed`` > 1 is faster."""
    if style.ndim == 1:
        style = style[None, :]
    input_ids = mx.array([[0, *ids, 0]])
    n = input_ids.shape[1]
    lengths = mx.array([n])
    mask = mx.zeros((1, n), dtype=mx.bool_)

    bert = model.bert(input_ids)
    d_en = model.bert_encoder(bert).transpose(0, 2, 1)
    s_prosody, s_decoder = style[:, 128:], style[:, :128]

    predictor = model.predictor
    d = predictor.text_encoder(d_en, s_prosody, lengths, mask)
    x = predictor.lstm(d)
    duration = mx.sigmoid(predictor.duration_proj(x)).sum(axis=-1) / speed
    pred_dur = mx.maximum(mx.clip(mx.round(duration), 0, None).astype(mx.int32).squeeze(0), 1)
    durations = np.array(pred_dur)

    # Hard alignment: token i covers frames [sum(dur[:i]), sum(dur[:i+1])).
    frames = int(durations.sum())
    alignment = np.zeros((n, frames), dtype=np.float32)
    alignment[np.repeat(np.arange(n), durations), np.arange(frames)] = 1.0
    aligned = mx.array(alignment)[None]

    f0, noise = predictor.F0Ntrain(d.transpose(0, 2, 1) @ aligned, s_prosody)
    asr = model.text_encoder(input_ids, lengths, mask) @ aligned
    audio = model.decoder(asr, f0, noise, s_decoder).squeeze()
    return Synthesis(np.array(audio, dtype=np.float32), durations.astype(np.int64))
