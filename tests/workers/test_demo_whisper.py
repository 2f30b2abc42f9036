"""The demo Whisper folder: deterministic, complete, rebuilt when outdated."""

from __future__ import annotations

import json
from pathlib import Path

from demos.llm import COMPLETE_MARKER
from demos.whisper import DIMENSIONS, NAME, create_model, ensure_demo_whisper, is_complete


def test_the_demo_whisper_is_deterministic_and_rebuilt_when_outdated(tmp_path: Path) -> None:
    first = create_model(tmp_path / "a")
    assert first.name == NAME and is_complete(first)
    config = json.loads((first / "config.json").read_text())
    assert config == {"model_type": "whisper", **DIMENSIONS}
    (first / COMPLETE_MARKER).write_text("an older fingerprint\n")
    rebuilt = ensure_demo_whisper(tmp_path / "a")
    assert is_complete(rebuilt)
    second = create_model(tmp_path / "b")
    for name in ("config.json", "weights.safetensors"):
        assert (rebuilt / name).read_bytes() == (second / name).read_bytes(), name
