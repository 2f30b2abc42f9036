"""Create the offline random-weight demo image model (FLUX.2-klein shape, tiny).

``python -m demos.flux --out models`` writes ``models/demo-flux2-klein-tiny``:
mflux's own FLUX.2-klein classes (``Flux2Transformer``, ``Qwen3TextEncoder``,
``Flux2VAE``) built with random weights and saved by mflux's ``ModelSaver``, so
``Flux2Klein(model_path=...)`` loads it through the same loader as a real
checkpoint. Its images are noise; it exists so the real mflux code path (prompt
encoding, latents, transformer, scheduler, VAE encode/decode) runs offline.

What is small and what is not:

- transformer: 1 double + 1 single block, 2 heads of 32 (hidden 64), rope axes
  (8, 8, 8, 8) summing to the head width;
- text encoder: a Qwen3 of hidden 32 and 27 layers, because FLUX.2 reads the
  hidden states after layers 9, 18 and 27 (joint attention width 3 x 32);
  the demo byte-level BPE tokenizer (1,000 tokens) with a ChatML template;
- VAE: mflux's Flux2VAE has no size parameters for its encoder (≈ 84M
  parameters, as in the real model); it is kept whole, random. Decoding a 64x64
  image with it is most of the time a demo image takes on a CPU.

The architecture is written as ``transformer/config.json`` and
``text_encoder/config.json`` (the diffusers / Hugging Face layout a real
snapshot has); the worker reads them to size mflux's classes.
"""

# MLX must find OpenBLAS already loaded, so this comes before anything imports mlx.
from workers.blas import preload_openblas

preload_openblas()

# ruff: noqa: E402
import contextlib
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from tokenizers import Tokenizer

from demos.llm import (
    CHAT_TEMPLATE,
    COMPLETE_MARKER,
    CORPUS_PATH,
    ENDOFTEXT,
    IM_END,
    VOCAB_SIZE,
    _tokenizer_json,
    _write_json,
    builder_main,
    ensure_folder,
    staged_folder,
)

NAME = "demo-flux2-klein-tiny"
FORMAT_VERSION = 1
SEED = 4

# Keys are the constructor arguments of mflux's Flux2Transformer / Qwen3TextEncoder
# (and of diffusers' Flux2Transformer2DModel / transformers' Qwen3 config).
TRANSFORMER_CONFIG: dict[str, Any] = {
    "num_layers": 1,
    "num_single_layers": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 32,
    "axes_dims_rope": [8, 8, 8, 8],
    "joint_attention_dim": 3 * 32,
    "mlp_ratio": 2.0,
}
TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 32,
    "num_hidden_layers": 27,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "intermediate_size": 64,
    "max_position_embeddings": 1024,
}


def _fingerprint() -> str:
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, SEED, TRANSFORMER_CONFIG, TEXT_ENCODER_CONFIG]).encode())
    h.update(CORPUS_PATH.read_bytes())
    return h.hexdigest()[:16]


def is_complete(model_dir: Path) -> bool:
    try:
        return (model_dir / COMPLETE_MARKER).read_text().strip() == _fingerprint()
    except FileNotFoundError:
        return False


def _tokenizer() -> Any:
    """The demo BPE as the Qwen2TokenizerFast mflux's FLUX.2 definition asks for."""
    from transformers import Qwen2TokenizerFast  # type: ignore[attr-defined]  # a lazy alias

    return Qwen2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )


def _components() -> SimpleNamespace:
    """mflux's real FLUX.2 modules, sized as above, with seeded random weights."""
    from mflux.models.flux2.model.flux2_text_encoder.qwen3_text_encoder import Qwen3TextEncoder
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer
    from mflux.models.flux2.model.flux2_vae.vae import Flux2VAE

    mx.random.seed(SEED)
    rope = tuple(TRANSFORMER_CONFIG["axes_dims_rope"])
    transformer_args = dict(TRANSFORMER_CONFIG, axes_dims_rope=rope)
    model = SimpleNamespace(
        vae=Flux2VAE(),
        transformer=Flux2Transformer(**transformer_args),
        text_encoder=Qwen3TextEncoder(**TEXT_ENCODER_CONFIG),
    )
    for module in (model.vae, model.transformer, model.text_encoder):
        mx.eval(module.parameters())
    return model


README = """\
# {name}

Random-weight DEMO image model made offline by mlx-gateway (demos/flux.py). \
Its images are noise; it exists to exercise the real mflux FLUX.2-klein code path \
without downloads.

- transformer: {transformer:,} parameters ({blocks})
- text encoder: Qwen3, {text:,} parameters (hidden 32, 27 layers), demo BPE tokenizer
- VAE: mflux's Flux2VAE, {vae:,} parameters (not shrinkable), random
- saved by mflux's ModelSaver (bfloat16, seed {seed}); load with
  `Flux2Klein(model_path=..., model_config=...)` sized from transformer/ and
  text_encoder/config.json
"""


def _count(module: Any) -> int:
    return sum(v.size for _, v in tree_flatten(module.parameters()))  # type: ignore[misc]


def create_model(out_dir: Path) -> Path:
    """(Re)create the demo image model as ``out_dir/NAME`` (staged, then renamed)."""
    from mflux.models.common.weights.saving.model_saver import ModelSaver
    from mflux.models.flux2.weights.flux2_weight_definition import Flux2KleinWeightDefinition

    final = Path(out_dir) / NAME
    with staged_folder(final, _fingerprint()) as staging:
        model = _components()
        model.tokenizers = {"qwen3": SimpleNamespace(tokenizer=_tokenizer())}
        # ModelSaver prints tqdm bars; keep setup's output to one line per model.
        with contextlib.redirect_stderr(io.StringIO()):
            ModelSaver.save_model(
                model=model,
                bits=None,  # mflux writes "None": not quantized
                base_path=str(staging),
                weight_definition=Flux2KleinWeightDefinition,
                # The loader casts to bfloat16 anyway; half the bytes on disk.
                dtypes=dict.fromkeys(("vae", "transformer", "text_encoder"), mx.bfloat16),
            )
        _write_json(staging / "transformer" / "config.json", TRANSFORMER_CONFIG)
        _write_json(staging / "text_encoder" / "config.json", TEXT_ENCODER_CONFIG)
        _write_json(
            staging / "model_index.json",
            {"_class_name": "Flux2KleinPipeline", "mlx_gateway_demo": True},
        )
        text = README.format(
            name=NAME,
            transformer=_count(model.transformer),
            blocks="1 double + 1 single block, hidden 64",
            text=_count(model.text_encoder),
            vae=_count(model.vae),
            seed=SEED,
        )
        (staging / "README.md").write_text(text, encoding="utf-8")
    return final


def ensure_demo_flux(out_root: Path) -> Path:
    return ensure_folder(out_root, NAME, is_complete, create_model)[0]


def main() -> None:
    builder_main(__doc__ or NAME, NAME, is_complete, create_model)


if __name__ == "__main__":
    main()
