"""Create the offline random-weight demo models.

``python -m demos.llm --out models`` writes two tiny Hugging Face-style
model folders (a llama and a qwen2) that ``mlx_lm.load(path)`` loads without any
download. Their weights are random, so their output is gibberish; they exist so
that the gateway, the workers, the tests and the benchmarks run the real mlx-lm
code path (real model classes, a real byte-level BPE tokenizer, a ChatML chat
template) on a machine with no network.

Everything is deterministic: the tokenizer is trained on ``corpus.txt`` and
each model is initialised from a fixed seed, so re-creating a model gives
byte-identical files.
"""

# MLX must find OpenBLAS already loaded, so this comes before anything imports mlx.
from workers.blas import preload_openblas

preload_openblas()

# ruff: noqa: E402
import argparse
import contextlib
import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS_PATH = Path(__file__).with_name("corpus.txt")

# Bump when the folder layout or file contents change in a way the fingerprint
# below would not notice, so existing folders are rebuilt.
FORMAT_VERSION = 2  # 2: the chat template renders tools
COMPLETE_MARKER = ".complete"

VOCAB_SIZE = 1000
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # ids 0, 1, 2 in this order
BOS_TOKEN_ID, EOS_TOKEN_ID = 0, 2  # as in Qwen2: bos is <|endoftext|>, never prepended

# ChatML, with tools as Qwen2.5 renders them: their JSON signatures inside
# <tools></tools> in the system prompt, an assistant's calls as
# <tool_call>{"name": ..., "arguments": ...}</tool_call> (mlx-lm reads these
# with its "json_tools" parser) and tool results as <tool_response> in a user
# turn. Content may be a string or a list of OpenAI-style parts (text parts are
# joined; others are ignored: these models only read text).
CONTENT = (
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
)
CHAT_TEMPLATE = (
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set message = messages[0] -%}" + CONTENT + "{{- '\\n\\n' -}}"
    "{%- endif -%}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' -}}{{- tool | tojson -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name "
    "and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>'
    "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if tools and loop.first and message['role'] == 'system' -%}"
    "{%- elif message['role'] == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}"
    "{{- '<|im_start|>user' -}}"
    "{%- endif -%}"
    "{{- '\\n<tool_response>\\n' -}}" + CONTENT + "{{- '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}" + CONTENT + ""
    "{%- for tool_call in message['tool_calls'] or [] -%}"
    "{%- if tool_call.function is defined -%}"
    "{%- set tool_call = tool_call.function -%}"
    "{%- endif -%}"
    "{%- if not loop.first or message['content'] -%}{{- '\\n' -}}{%- endif -%}"
    '{{- \'<tool_call>\\n{"name": "\' + tool_call.name + \'", "arguments": \' -}}'
    "{{- tool_call.arguments | tojson -}}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

README = """\
# {name}

Random-weight demo model made offline by mlx-gateway (demos/llm.py). \
Its output is gibberish; it exists to exercise the real mlx-lm code path without downloads.

- architecture: `{model_type}` ({params:,} parameters, float32, seed {seed})
- tokenizer: byte-level BPE, {vocab} tokens, trained on demos/corpus.txt
- chat template: ChatML (`<|im_start|>role ... <|im_end|>`)
"""


@dataclass(frozen=True)
class DemoModelSpec:
    """Shape and seed of one demo model (the non-derived part of its config.json)."""

    model_type: str  # an mlx_lm.models module name
    architecture: str  # the Hugging Face class name, for config.json only
    seed: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    tie_word_embeddings: bool
    rms_norm_eps: float
    rope_theta: float
    # max_position_embeddings and model_max_length: RoPE models with random
    # weights run at any length, so this is only the limit the gateway enforces.
    context_length: int = 2048
    # Multiplies the output head's EOS row (untied heads only). Random weights
    # sample EOS about once in VOCAB_SIZE tokens, so answers run to max_tokens;
    # agents such as Codex CLI treat an answer cut short as a failed turn.
    eos_logit_scale: float = 1.0


# Two families with different shapes, so code that assumes one architecture,
# tied/untied heads or a particular head_dim is caught; and a long-context one
# for agents, whose prompts (Codex CLI's: ~20k tokens here) need more than
# 2,048 tokens: one layer with one head, so a 20k-token prefill takes seconds
# on a CPU, and an EOS-leaning head, so its turns end by themselves.
DEMO_MODELS: dict[str, DemoModelSpec] = {
    "demo-llama-tiny": DemoModelSpec(
        model_type="llama",
        architecture="LlamaForCausalLM",
        seed=1,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    ),
    "demo-qwen2-tiny": DemoModelSpec(
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        seed=2,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=192,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
    ),
    "demo-llama-long": DemoModelSpec(
        model_type="llama",
        architecture="LlamaForCausalLM",
        seed=3,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        intermediate_size=128,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        context_length=131_072,
        eos_logit_scale=5.0,
    ),
}


@cache
def _tokenizer_json() -> str:
    """Train the shared byte-level BPE once per process; return its tokenizer.json text."""
    tokenizer = Tokenizer(models.BPE())
    # No prefix space: "hi" and " hi" stay different, as in GPT-2/Qwen tokenizers.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()  # mlx-lm picks BPEStreamingDetokenizer on this
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols, so any UTF-8 text encodes, not only the corpus's characters.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = CORPUS_PATH.read_text(encoding="utf-8")
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:
        # config.json's vocab_size depends on it; a too-small corpus would shrink it.
        raise RuntimeError(
            f"demo tokenizer has {tokenizer.get_vocab_size()} tokens, expected {VOCAB_SIZE}"
        )
    return tokenizer.to_str(pretty=True)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The demo tokenizer as transformers loads it from a demo model folder."""
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )


def _config(spec: DemoModelSpec) -> dict:
    """config.json for a spec: everything mlx-lm reads, plus the usual HF fields."""
    return {
        "architectures": [spec.architecture],
        "model_type": spec.model_type,
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.hidden_size // spec.num_attention_heads,
        "intermediate_size": spec.intermediate_size,
        "hidden_act": "silu",
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "max_position_embeddings": spec.context_length,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "vocab_size": VOCAB_SIZE,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "torch_dtype": "float32",
        "mlx_gateway_demo": True,
    }


def tokenizer_config(model_max_length: int = 2048, chat_template: str = CHAT_TEMPLATE) -> dict:
    """tokenizer_config.json of a folder with the demo BPE (the VLM's too)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": chat_template,
    }


def _fingerprint(spec: DemoModelSpec) -> str:
    """Identifies what a folder was made from; a folder made from anything else is
    rebuilt. Fields at their defaults are left out, so adding a field does not
    rebuild the models it does not change."""
    defaults = {f.name: f.default for f in fields(DemoModelSpec)}
    shape = {k: v for k, v in asdict(spec).items() if v != defaults[k]}
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, shape], sort_keys=True).encode())
    h.update(CORPUS_PATH.read_bytes())
    return h.hexdigest()[:16]


def is_complete(model_dir: Path, name: str) -> bool:
    """True if model_dir holds a fully written demo model made from the current spec."""
    marker = model_dir / COMPLETE_MARKER
    try:
        return marker.read_text().strip() == _fingerprint(DEMO_MODELS[name])
    except FileNotFoundError:
        return False


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _weights(spec: DemoModelSpec) -> tuple[dict[str, mx.array], int]:
    """Random weights of the real mlx-lm model class; the same seed gives the same weights."""
    module = importlib.import_module(f"mlx_lm.models.{spec.model_type}")
    args = module.ModelArgs.from_dict(_config(spec))
    mx.random.seed(spec.seed)
    model = module.Model(args)
    weights = dict(tree_flatten(model.parameters()))
    if spec.eos_logit_scale != 1.0:
        if spec.tie_word_embeddings:
            raise ValueError("eos_logit_scale needs an untied output head")
        head = weights["lm_head.weight"]
        scale = mx.ones((head.shape[0], 1)).at[EOS_TOKEN_ID].multiply(spec.eos_logit_scale)
        weights["lm_head.weight"] = head * scale
    mx.eval(weights)
    return weights, sum(w.size for w in weights.values())


@contextlib.contextmanager
def staged_folder(final: Path, fingerprint: str) -> Iterator[Path]:
    """Build a model folder in a hidden staging folder, then rename it into place.

    The completion marker (holding ``fingerprint``) is written last and the
    rename happens after it, so readers never see a half-written model and an
    interrupted run leaves nothing that looks complete.
    """
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        (staging / COMPLETE_MARKER).write_text(fingerprint + "\n")  # last on purpose
        if final.exists():
            _remove_stale(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def create_model(out_dir: Path, name: str) -> Path:
    """(Re)create demo model ``name`` as ``out_dir/name`` (see :func:`staged_folder`)."""
    spec = DEMO_MODELS[name]
    out_dir = Path(out_dir)
    final = out_dir / name
    with staged_folder(final, _fingerprint(spec)) as staging:
        weights, n_params = _weights(spec)
        mx.save_safetensors(str(staging / "model.safetensors"), weights)
        _write_json(staging / "config.json", _config(spec))
        generation_config = {"bos_token_id": BOS_TOKEN_ID, "eos_token_id": EOS_TOKEN_ID}
        _write_json(staging / "generation_config.json", generation_config)
        (staging / "tokenizer.json").write_text(_tokenizer_json() + "\n", encoding="utf-8")
        _write_json(staging / "tokenizer_config.json", tokenizer_config(spec.context_length))
        special_tokens_map = {
            "eos_token": IM_END,
            "pad_token": ENDOFTEXT,
            "additional_special_tokens": [IM_START, IM_END],
        }
        _write_json(staging / "special_tokens_map.json", special_tokens_map)
        (staging / "README.md").write_text(
            README.format(
                name=name,
                model_type=spec.model_type,
                params=n_params,
                seed=spec.seed,
                vocab=VOCAB_SIZE,
            ),
            encoding="utf-8",
        )
    return final


def ensure_folder(
    out_root: Path, name: str, complete: Callable[[Path], bool], create: Callable[[Path], Path]
) -> tuple[Path, bool]:
    """(path, created) of a one-folder demo model: ``create(out_root)`` unless
    ``complete(out_root / name)`` says an up-to-date copy is there."""
    path = Path(out_root) / name
    if complete(path):
        return path, False
    return create(Path(out_root)), True


def builder_main(
    doc: str, name: str, complete: Callable[[Path], bool], create: Callable[[Path], Path]
) -> None:
    """The command line of a one-folder demo builder (``python -m demos.X
    --out models``): idempotent, it says whether it built the folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="default: models")
    args = parser.parse_args()
    start = time.perf_counter()
    path, created = ensure_folder(args.out, name, complete, create)
    if created:
        print(f"demo model {path}: created in {time.perf_counter() - start:.2f} s")
    else:
        print(f"demo model {path}: already present")


def _remove_stale(model_dir: Path) -> None:
    """Delete an incomplete or outdated demo folder, refusing anything that is not one."""
    config = model_dir / "config.json"
    if config.exists() and not json.loads(config.read_text()).get("mlx_gateway_demo"):
        raise FileExistsError(f"{model_dir} exists and is not an mlx-gateway demo model")
    shutil.rmtree(model_dir)


def _ensure(out_root: Path, name: str) -> tuple[Path, bool]:
    """Return (path, created): create ``name`` unless a complete copy is already there."""
    path = Path(out_root) / name
    if is_complete(path, name):
        return path, False
    return create_model(Path(out_root), name), True


def ensure_demo_models(out_root: Path) -> list[Path]:
    """Create every demo model missing or incomplete under out_root; return all their paths."""
    return [_ensure(out_root, name)[0] for name in DEMO_MODELS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="default: models")
    args = parser.parse_args()
    for name in DEMO_MODELS:
        start = time.perf_counter()
        path, created = _ensure(args.out, name)
        if created:
            print(f"demo model {path}: created in {time.perf_counter() - start:.2f} s")
        else:
            print(f"demo model {path}: already present")


if __name__ == "__main__":
    main()
