"""The demo Kokoro folder: what kokoro-mlx's own loader reads, under the
original checkpoint's key names, with voices to mix."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from demos.kokoro import NAME, VOICE_SHAPE, VOICES, is_complete


def test_the_demo_kokoro_loads_with_kokoro_mlx(demo_kokoro: Path) -> None:
    from kokoro_mlx import KokoroTTS

    assert demo_kokoro.name == NAME and is_complete(demo_kokoro)
    tts = KokoroTTS.from_pretrained(demo_kokoro)
    assert tts.list_voices() == sorted(VOICES) and len(VOICES) >= 2
    assert tts._voices.load_voice(VOICES[0]).shape == VOICE_SHAPE


def test_its_weights_use_the_pytorch_checkpoint_names(demo_kokoro: Path) -> None:
    weights = mx.load(str(demo_kokoro / "kokoro-v1_0.safetensors"))
    assert "predictor.lstm.weight_ih_l0_reverse" in weights
    assert "predictor.lstm.fwd.Wx" not in weights
    # PyTorch's Conv1d layout (out, in, kernel) for the plain convs.
    assert weights["predictor.F0_proj.weight"].shape == (1, 256, 1)
