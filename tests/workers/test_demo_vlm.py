"""The demo VLM folder: deterministic, complete, loadable by mlx-vlm's own loader."""

from __future__ import annotations

from pathlib import Path

from demos.vlm import IMAGE_PAD_ID, NAME, create_model, is_complete


def test_the_demo_vlm_is_deterministic(tmp_path: Path) -> None:
    first = create_model(tmp_path / "a")
    second = create_model(tmp_path / "b")
    assert first.name == NAME and is_complete(first)
    files = sorted(p.name for p in first.iterdir())
    assert "preprocessor_config.json" in files and "model.safetensors" in files
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_its_processor_has_the_vision_tokens(demo_vlm: Path) -> None:
    from mlx_vlm.utils import load_processor

    processor = load_processor(demo_vlm, True)
    assert processor.image_token == "<|image_pad|>"
    assert processor.image_token_id == IMAGE_PAD_ID
