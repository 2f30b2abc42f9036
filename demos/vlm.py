"""Create the offline random-weight demo vision-language model.

``python -m demos.vlm --out models`` writes ``models/demo-qwen2-vl-tiny``:
a tiny Qwen2-VL made from mlx-vlm's own model classes (a 1-layer vision tower
and a 2-layer language model, random weights) with a processor built locally:
the demo byte-level BPE tokenizer of :mod:`demos.llm` plus Qwen2-VL's
vision special tokens, and a Qwen2-VL image processor config. ``mlx_vlm.load``
loads the folder with no download. Its output is gibberish; it exists so the
real mlx-vlm code path (image preprocessing, vision tower, mRoPE, generation)
runs on a machine with no network. Deterministic, like the LLM demo models.
"""

# MLX must find OpenBLAS already loaded, so this comes before anything imports mlx.
from workers.blas import preload_openblas

preload_openblas()

# ruff: noqa: E402
import hashlib
import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from tokenizers import AddedToken, Tokenizer

from demos.llm import (
    COMPLETE_MARKER,
    CORPUS_PATH,
    ENDOFTEXT,
    EOS_TOKEN_ID,
    IM_END,
    IM_START,
    VOCAB_SIZE,
    _tokenizer_json,
    _write_json,
    builder_main,
    ensure_folder,
    staged_folder,
    tokenizer_config,
)

NAME = "demo-qwen2-vl-tiny"
FORMAT_VERSION = 1
SEED = 3

# Qwen2-VL's vision markers, appended to the demo vocabulary (ids 1000..1003).
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_TOKENS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
VOCAB = VOCAB_SIZE + len(VISION_TOKENS)
VISION_START_ID, VISION_END_ID, IMAGE_PAD_ID, VIDEO_PAD_ID = range(VOCAB_SIZE, VOCAB)

# ChatML whose content may be a list of parts: an image part becomes Qwen2-VL's
# <|vision_start|><|image_pad|><|vision_end|> (the processor then repeats the
# pad once per merged image patch).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] in ('image', 'image_url') -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

HIDDEN, HEADS = 64, 4  # head_dim 16: mRoPE sections [2, 3, 3] cover its 8 frequencies


def _config() -> dict:
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": HEADS,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "vocab_size": VOCAB,
        "bos_token_id": 0,
        "eos_token_id": EOS_TOKEN_ID,
        "image_token_id": IMAGE_PAD_ID,
        "video_token_id": VIDEO_PAD_ID,
        "vision_start_token_id": VISION_START_ID,
        "vision_end_token_id": VISION_END_ID,
        "vision_config": {
            "model_type": "qwen2_vl",
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": HIDDEN,
            "num_heads": 2,
            "mlp_ratio": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "torch_dtype": "float32",
        "mlx_gateway_demo": True,
    }


def _preprocessor_config() -> dict:
    # Small images: at most 112x112 pixels (64 patches, 16 image tokens after 2x2 merging).
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 1 / 255,
        "merge_size": 2,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "min_pixels": 56 * 56,
        "max_pixels": 112 * 112,
        "size": {"shortest_edge": 56 * 56, "longest_edge": 112 * 112},
    }


def _tokenizer() -> str:
    tokenizer = Tokenizer.from_str(_tokenizer_json())
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in VISION_TOKENS])
    if tokenizer.get_vocab_size() != VOCAB or tokenizer.token_to_id(IMAGE_PAD) != IMAGE_PAD_ID:
        raise RuntimeError("demo VLM tokenizer: vision tokens did not get the expected ids")
    return tokenizer.to_str(pretty=True)


def _tokenizer_config() -> dict:
    return {
        **tokenizer_config(model_max_length=4096, chat_template=CHAT_TEMPLATE),
        "extra_special_tokens": {"image_token": IMAGE_PAD, "video_token": VIDEO_PAD},
    }


def _fingerprint() -> str:
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, SEED, _config(), CHAT_TEMPLATE]).encode())
    h.update(CORPUS_PATH.read_bytes())
    return h.hexdigest()[:16]


def is_complete(model_dir: Path) -> bool:
    try:
        return (model_dir / COMPLETE_MARKER).read_text().strip() == _fingerprint()
    except FileNotFoundError:
        return False


def _weights() -> tuple[dict[str, mx.array], int]:
    from mlx_vlm.models import qwen2_vl

    config = qwen2_vl.ModelConfig.from_dict(_config())
    config.vision_config = qwen2_vl.VisionConfig.from_dict(_config()["vision_config"])
    config.text_config = qwen2_vl.TextConfig.from_dict(_config())
    mx.random.seed(SEED)
    model = qwen2_vl.Model(config)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    return weights, sum(w.size for w in weights.values())


README = """\
# {name}

Random-weight DEMO vision-language model made offline by mlx-gateway \
(demos/vlm.py). Its output is gibberish; it exists to exercise the real \
mlx-vlm code path without downloads.

- architecture: `qwen2_vl` ({params:,} parameters, float32, seed {seed})
- tokenizer: the demo byte-level BPE + Qwen2-VL's vision tokens ({vocab} tokens)
- images: resized to at most 112x112 pixels (at most 16 image tokens)
"""


def create_model(out_dir: Path) -> Path:
    """(Re)create the demo VLM as ``out_dir/NAME`` (staged, then renamed into place)."""
    out_dir = Path(out_dir)
    final = out_dir / NAME
    with staged_folder(final, _fingerprint()) as staging:
        weights, n_params = _weights()
        mx.save_safetensors(str(staging / "model.safetensors"), weights)
        _write_json(staging / "config.json", _config())
        _write_json(staging / "generation_config.json", {"eos_token_id": EOS_TOKEN_ID})
        (staging / "tokenizer.json").write_text(_tokenizer() + "\n", encoding="utf-8")
        _write_json(staging / "tokenizer_config.json", _tokenizer_config())
        special = {
            "eos_token": IM_END,
            "pad_token": ENDOFTEXT,
            "additional_special_tokens": [IM_START, IM_END, *VISION_TOKENS],
        }
        _write_json(staging / "special_tokens_map.json", special)
        _write_json(staging / "preprocessor_config.json", _preprocessor_config())
        _write_json(staging / "processor_config.json", {"processor_class": "Qwen2VLProcessor"})
        (staging / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
        text = README.format(name=NAME, params=n_params, seed=SEED, vocab=VOCAB)
        (staging / "README.md").write_text(text, encoding="utf-8")
    return final


def ensure_demo_vlm(out_root: Path) -> Path:
    return ensure_folder(out_root, NAME, is_complete, create_model)[0]


def main() -> None:
    builder_main(__doc__ or NAME, NAME, is_complete, create_model)


if __name__ == "__main__":
    main()
