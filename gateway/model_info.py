"""What ``/v1/models`` says about each model beyond its name: where its weights
are, how they are quantized, its context length and what it can do.

Read by the gateway from the model folder's own files (``config.json``,
``tokenizer_config.json``, ``sentence_bert_config.json``) and the model's
config, without loading anything, so a model that is not loaded is described
too. A hub id is looked up in the local Hugging Face cache (never fetched);
what cannot be read is null.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import msgspec

from gateway.openai_schemas import Quantization
from protocol.config import ModelConfig
from protocol.model_paths import PACKAGE_PREFIX, looks_local, package_folder

# What each family's endpoints do, before what its config adds.
FAMILY_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "llm": ("completions", "structured_outputs"),
    "vlm": ("chat", "vision"),
    "embeddings": ("embeddings",),
    "whisper": ("transcription", "translation"),
    "kokoro": ("speech",),
    "flux": ("images", "image_edits"),
}
# Reasoning markers mlx-lm finds in a tokenizer (the common pair).
THINK_MARKERS = ("<think>", "</think>")


class ModelInfo(msgspec.Struct):
    path: str
    quantization: Quantization | None
    context_length: int | None
    capabilities: list[str]


def model_info(model: ModelConfig) -> ModelInfo:
    folder = model_folder(model.path)
    stamp = _mtime(folder / "config.json") if folder is not None else 0.0
    options = json.dumps(model.options, sort_keys=True, default=str)
    return _read(model.family, model.path, str(folder) if folder else "", stamp, options)


def model_folder(path: str) -> Path | None:
    """The model's local folder: its path, its package's folder, or a hub id's
    snapshot in the local cache; None when there is none here."""
    try:
        if path.startswith(PACKAGE_PREFIX):
            return package_folder(path)
    except FileNotFoundError:
        return None
    if looks_local(path):
        folder = Path(path).expanduser()
        return folder if folder.is_dir() else None
    from huggingface_hub import try_to_load_from_cache  # only for hub ids

    cached = try_to_load_from_cache(path, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


@functools.lru_cache(maxsize=256)
def _read(family: str, path: str, folder: str, stamp: float, options_json: str) -> ModelInfo:
    options: dict[str, Any] = json.loads(options_json)
    where = Path(folder) if folder else None
    config = _json(where / "config.json") if where else {}
    text_config = config.get("text_config")
    if not isinstance(text_config, dict):
        text_config = {}
    capabilities = list(FAMILY_CAPABILITIES.get(family, ()))
    if family == "llm":
        capabilities = _text_capabilities(where, options) + capabilities
    return ModelInfo(
        path=path,
        quantization=_quantization(config),
        context_length=_context_length(family, where, config, text_config, options),
        capabilities=capabilities,
    )


def _text_capabilities(folder: Path | None, options: dict[str, Any]) -> list[str]:
    tokenizer_config = (folder / "tokenizer_config.json") if folder else None
    raw, template = "", ""
    if tokenizer_config is not None and _exists(tokenizer_config):
        raw = tokenizer_config.read_text(errors="replace")
        template = str(_json(tokenizer_config).get("chat_template") or "")
    for name in ("chat_template.jinja", "chat_template.json"):
        if folder is not None and _exists(folder / name):
            template += (folder / name).read_text(errors="replace")
    found = []
    if template:
        found.append("chat")
        if "tools" in template:
            found.append("tools")
    reasoning = options.get("reasoning", "auto")
    if isinstance(reasoning, list) or (
        reasoning == "auto" and all(marker in raw + template for marker in THINK_MARKERS)
    ):
        found.append("reasoning")
    return found


def _quantization(config: dict[str, Any]) -> Quantization | None:
    for key in ("quantization", "quantization_config"):
        q = config.get(key)
        if isinstance(q, dict) and isinstance(q.get("bits"), int):
            group = q.get("group_size")
            return Quantization(q["bits"], group if isinstance(group, int) else None)
    return None


def _context_length(
    family: str,
    folder: Path | None,
    config: dict[str, Any],
    text_config: dict[str, Any],
    options: dict[str, Any],
) -> int | None:
    def first_int(*values: Any) -> int | None:
        return next((v for v in values if isinstance(v, int) and v > 0), None)

    positions = config.get("max_position_embeddings")
    if family == "llm":
        return first_int(
            options.get("context_length"), positions, text_config.get("max_position_embeddings")
        )
    if family == "vlm":
        return first_int(
            options.get("context_length"), text_config.get("max_position_embeddings"), positions
        )
    if family == "embeddings":
        sentence = _json(folder / "sentence_bert_config.json") if folder else {}
        longest = first_int(options.get("max_input_tokens"), sentence.get("max_seq_length"))
        if longest is not None and isinstance(positions, int):
            return min(longest, positions)
        return first_int(longest, positions)
    if family == "whisper":
        return first_int(config.get("n_text_ctx"))
    return None


def _json(file: Path | None) -> dict[str, Any]:
    try:
        value = json.loads(file.read_bytes()) if file is not None else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _exists(file: Path | None) -> bool:
    return file is not None and file.is_file()


def _mtime(file: Path) -> float:
    try:
        return file.stat().st_mtime
    except OSError:
        return 0.0
