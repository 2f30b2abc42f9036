"""One engine per model family; ``build_engine`` picks it from the config."""

from __future__ import annotations

from protocol.config import ModelConfig
from workers.engine import Engine


def build_engine(model: ModelConfig) -> Engine:
    """The engine for ``model.family``; engines import their libraries lazily."""
    if model.family == "llm":
        from workers.engines.llm import LLMEngine

        return LLMEngine(model)
    if model.family == "vlm":
        from workers.engines.vlm import VLMEngine

        return VLMEngine(model)
    if model.family == "whisper":
        from workers.engines.whisper import WhisperEngine

        return WhisperEngine(model)
    if model.family == "embeddings":
        from workers.engines.embeddings import EmbeddingsEngine

        return EmbeddingsEngine(model)
    if model.family == "kokoro":
        from workers.engines.kokoro import KokoroEngine

        return KokoroEngine(model)
    if model.family == "flux":
        from workers.engines.flux import FluxEngine

        return FluxEngine(model)
    raise NotImplementedError(f"no engine for family {model.family!r} yet (model {model.name!r})")
