"""The offline demo models load and run through the real mlx-lm code path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demos.llm import (
    COMPLETE_MARKER,
    DEMO_MODELS,
    create_model,
    ensure_demo_models,
)

# Local paths never need the hub; this makes any accidental lookup fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "How are you?"},
]
TEXT = "héllo wörld 😀 日本"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    paths = ensure_demo_models(root)
    assert [p.name for p in paths] == list(DEMO_MODELS)
    return root


@pytest.fixture(scope="module", params=list(DEMO_MODELS))
def loaded(request: pytest.FixtureRequest, models_root: Path):
    """(name, model, tokenizer) from mlx_lm.load of each demo folder."""
    # Imported here, not at the top: demos.llm must load OpenBLAS before mlx.
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(models_root / request.param))
    return request.param, model, tokenizer


def test_load_gives_the_real_mlx_lm_model_class(loaded) -> None:
    name, model, _ = loaded
    model_type = DEMO_MODELS[name].model_type
    assert type(model).__module__ == f"mlx_lm.models.{model_type}"
    assert model.args.tie_word_embeddings is DEMO_MODELS[name].tie_word_embeddings


def test_chat_template_is_chatml(loaded) -> None:
    _, _, tokenizer = loaded
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHello there<|im_end|>\n"
        "<|im_start|>assistant\nHi.<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tokenizer.encode(prompt)
    # The ChatML markers are single special tokens, and nothing (no BOS) is prepended.
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_id in tokenizer.eos_token_ids


def test_chat_template_renders_tools_as_qwen2_5_does(loaded) -> None:
    _, _, tokenizer = loaded
    # mlx-lm reads this template's calls with its JSON parser.
    assert tokenizer.has_tool_calling and tokenizer.tool_call_start == "<tool_call>"
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    messages = [
        CHAT[0],
        {"role": "user", "content": "Time?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "now", "arguments": {}}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    ]
    prompt = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=False
    )
    assert prompt.startswith("<|im_start|>system\nYou are terse.\n\n# Tools\n")
    assert '<tools>\n{"type": "function", "function": {"name": "now"' in prompt
    assert prompt.endswith(
        "<|im_start|>user\nTime?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'
        "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nnoon\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_unicode_round_trips(loaded) -> None:
    _, _, tokenizer = loaded
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT
    detokenizer = tokenizer.detokenizer
    assert type(detokenizer).__name__ == "BPEStreamingDetokenizer"
    detokenizer.reset()
    for token in ids:
        detokenizer.add_token(token)
    detokenizer.finalize()
    assert detokenizer.text == TEXT


def test_generate_returns_text(loaded) -> None:
    import mlx_lm

    _, model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    text = mlx_lm.generate(model, tokenizer, prompt=prompt, max_tokens=8)
    assert isinstance(text, str)


def test_second_run_rewrites_nothing(models_root: Path) -> None:
    files = sorted(p for p in models_root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    ensure_demo_models(models_root)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert sorted(p for p in models_root.rglob("*") if p.is_file()) == files


def test_creation_is_deterministic_across_processes(models_root: Path, tmp_path: Path) -> None:
    # A separate process retrains the tokenizer and re-seeds the weights from scratch.
    other = tmp_path / "models"
    result = subprocess.run(
        [sys.executable, "-m", "demos.llm", "--out", str(other)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.stdout.count("created") == len(DEMO_MODELS)
    for name in DEMO_MODELS:
        for filename in ("model.safetensors", "tokenizer.json", "config.json"):
            a = (models_root / name / filename).read_bytes()
            b = (other / name / filename).read_bytes()
            assert a == b, f"{name}/{filename} differs between runs"


def test_incomplete_folder_is_rebuilt(models_root: Path, tmp_path: Path) -> None:
    # What an interrupted run could leave behind: some files, no completion marker.
    name = next(iter(DEMO_MODELS))
    broken = tmp_path / name
    broken.mkdir()
    (broken / "config.json").write_text('{"mlx_gateway_demo": true}')
    (broken / "model.safetensors").write_bytes(b"truncated")
    ensure_demo_models(tmp_path)
    assert (broken / COMPLETE_MARKER).exists()
    reference = models_root / name / "model.safetensors"
    assert (broken / "model.safetensors").read_bytes() == reference.read_bytes()


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path) -> None:
    name = next(iter(DEMO_MODELS))
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(FileExistsError):
        create_model(tmp_path, name)
    assert (tmp_path / name / "config.json").exists()
    assert not list(tmp_path.glob(f".{name}.partial-*"))  # the staging folder is cleaned up


def test_the_long_context_model_reads_long_prompts_and_ends_its_answers(models_root: Path) -> None:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    model, tokenizer = mlx_lm.load(str(models_root / "demo-llama-long"))
    assert model.args.max_position_embeddings == tokenizer.model_max_length == 131_072
    # Longer than the other demo models' 2,048 tokens, as agents' prompts are.
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": TEXT * 400}], add_generation_prompt=True
    )
    assert len(prompt) > 4096
    finish = []
    for seed in range(8):
        mx.random.seed(seed)
        *_, last = mlx_lm.stream_generate(
            model, tokenizer, prompt, max_tokens=1000, sampler=make_sampler(temp=1.0)
        )
        finish.append(last.finish_reason)
    # Sampled at temperature 1 (what agents send), its answers end with EOS.
    assert finish == ["stop"] * 8
