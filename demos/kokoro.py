"""Create the offline random-weight demo Kokoro text-to-speech model.

``python -m demos.kokoro --out models`` writes ``models/demo-kokoro-tiny``:
a Kokoro made from kokoro-mlx's own model classes with random weights, in the
layout ``kokoro_mlx.KokoroModel.from_pretrained`` loads (``config.json``,
``kokoro-v1_0.safetensors`` under the original PyTorch checkpoint's key
names, ``voices/<name>.safetensors``). Its "speech" is noise; it exists so the
real kokoro-mlx code path (ALBERT, duration predictor, F0/N predictor,
iSTFTNet vocoder) runs on a machine with no network.

kokoro-mlx hard-codes most sizes (hidden 512, decoder 1024, style 128), so
only the PL-BERT encoder shrinks: ≈ 75M parameters whatever we do. The
duration projection is cut down so every phoneme lasts 1-3 frames
(25-75 ms): the vocoder's cost grows with the audio's length, so short audio
keeps tests quick.
"""

# MLX must find OpenBLAS already loaded, so this comes before anything imports mlx.
from workers.blas import preload_openblas

preload_openblas()

# ruff: noqa: E402
import hashlib
import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from demos.llm import (
    COMPLETE_MARKER,
    _write_json,
    builder_main,
    ensure_folder,
    staged_folder,
)

NAME = "demo-kokoro-tiny"
FORMAT_VERSION = 1
SEED = 5
# Two voices at least, so weighted voice mixes can be exercised.
VOICES = ("af_demo", "af_tiny", "am_demo")
# What kokoro-mlx's VoiceManager loads: one style vector per input length.
VOICE_SHAPE = (510, 1, 256)
# A phoneme's frames are the sum of sigmoids over 50 bins (≈ 25 at random).
# Only the first 3 bins stay live, with amplified weights: 1-3 frames a phoneme
# that still differ between phonemes, so timings are visibly the model's own.
LIVE_DURATION_BINS, DURATION_GAIN = 3, 10.0
POST_GAIN, POST_BIAS = 0.1, -2.0
# Built by kokoro-mlx from constants (the iSTFT's DFT basis), not in a checkpoint.
COMPUTED = "decoder.generator.stft."

# The demo's phoneme alphabet: punctuation, Latin letters (misaki writes its
# diphthongs as capitals: A I O Q W Y, and T for a flap in some versions) and
# the IPA letters misaki and espeak-ng emit. Id 0 is the pad Kokoro puts at
# both ends. A real Kokoro brings its own vocabulary in its config.json.
PUNCTUATION = ';:,.!?¡¿—…"«»“” '
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
IPA = "ɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔʣʥʦʨᵝꭧᵊᵻˈˌːʰʲ↓→↗↘"


def vocab() -> dict[str, int]:
    symbols = list(dict.fromkeys(PUNCTUATION + LETTERS + IPA))
    return {symbol: i + 1 for i, symbol in enumerate(symbols)}


def _config() -> dict:
    symbols = vocab()
    if len(symbols) >= 178:
        raise RuntimeError("demo Kokoro vocabulary exceeds the 178-token embedding")
    return {
        "istftnet": {
            "upsample_kernel_sizes": [20, 12],
            "upsample_rates": [10, 6],
            "gen_istft_hop_size": 5,
            "gen_istft_n_fft": 20,
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "resblock_kernel_sizes": [3, 7, 11],
            "upsample_initial_channel": 512,
        },
        # The one part kokoro-mlx lets us shrink (the real model: 768 wide, 12 passes).
        "plbert": {
            "hidden_size": 64,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 512,
            "num_hidden_layers": 1,
            "dropout": 0.1,
        },
        "vocab": symbols,
        "dim_in": 64,
        "dropout": 0.2,
        "hidden_dim": 512,
        "max_conv_dim": 512,
        "max_dur": 50,
        "multispeaker": True,
        "n_layer": 3,
        "n_mels": 80,
        "n_token": 178,
        "style_dim": 128,
        "text_encoder_kernel_size": 5,
        "mlx_gateway_demo": True,
    }


def _fingerprint() -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                FORMAT_VERSION,
                SEED,
                VOICES,
                LIVE_DURATION_BINS,
                DURATION_GAIN,
                POST_GAIN,
                POST_BIAS,
                _config(),
            ]
        ).encode()
    )
    return h.hexdigest()[:16]


def is_complete(model_dir: Path) -> bool:
    try:
        return (model_dir / COMPLETE_MARKER).read_text().strip() == _fingerprint()
    except FileNotFoundError:
        return False


def checkpoint_weights(model: nn.Module) -> dict[str, mx.array]:
    """The model's parameters under the PyTorch checkpoint's key names.

    kokoro-mlx's loader maps the original keys onto its modules by hand; this
    is its inverse. Three things differ from the MLX tree: a BiLSTM's
    directions are ``fwd``/``bwd`` MLX LSTMs (PyTorch: ``weight_ih_l0``,
    ``..._reverse``, and two biases that MLX sums), and a plain Conv1d keeps
    its weight as (out, kernel, in) where PyTorch has (out, in, kernel).
    """
    plain_convs = {name for name, module in model.named_modules() if type(module) is nn.Conv1d}
    lstm_names = {"Wx": "weight_ih_l0", "Wh": "weight_hh_l0", "bias": "bias_ih_l0"}
    out: dict[str, mx.array] = {}
    for key, value in dict(tree_flatten(model.parameters())).items():
        if key.startswith(COMPUTED):
            continue
        prefix, _, leaf = key.rpartition(".")
        owner, _, direction = prefix.rpartition(".")
        if direction in ("fwd", "bwd") and leaf in lstm_names:
            suffix = "_reverse" if direction == "bwd" else ""
            out[f"{owner}.{lstm_names[leaf]}{suffix}"] = value
            if leaf == "bias":  # MLX's one bias = bias_ih + bias_hh
                out[f"{owner}.bias_hh_l0{suffix}"] = mx.zeros_like(value)
        elif prefix in plain_convs and leaf == "weight":
            out[key] = value.transpose(0, 2, 1)
        else:
            out[key] = value
    return out


def _model() -> tuple[nn.Module, dict[str, mx.array]]:
    from kokoro_mlx.config import KokoroConfig
    from kokoro_mlx.model import KokoroModel

    mx.random.seed(SEED)
    model = KokoroModel(KokoroConfig.from_dict(_config()))
    proj = model.predictor.duration_proj.linear_layer
    live = mx.arange(proj.weight.shape[0])[:, None] < LIVE_DURATION_BINS
    proj.weight = mx.where(live, proj.weight * DURATION_GAIN, 0.0)
    proj.bias = mx.where(live[:, 0], 0.0, -30.0)
    # Random weights give log-magnitudes far above 0 (peaks of 20-90 x full
    # scale, clipped to a square wave); damp the vocoder's last conv instead.
    post = model.decoder.generator.conv_post
    post.weight_g = post.weight_g * POST_GAIN
    post.bias = mx.full(post.bias.shape, POST_BIAS)
    # Stored in bfloat16 like mlx-community's Kokoro (half the size); the
    # loader upcasts to float32, so round the model the same way first.
    model.apply(lambda w: w.astype(mx.bfloat16).astype(mx.float32))
    weights = {k: v.astype(mx.bfloat16) for k, v in checkpoint_weights(model).items()}
    mx.eval(weights)
    return model, weights


def _check_round_trip(model: nn.Module, weights: dict[str, mx.array]) -> None:
    """Loading the checkpoint with kokoro-mlx's own loader gives back every parameter."""
    from kokoro_mlx.config import KokoroConfig
    from kokoro_mlx.model import KokoroModel, load_weights

    mx.random.seed(SEED + 1)
    fresh = KokoroModel(KokoroConfig.from_dict(_config()))
    loaded = load_weights(fresh, {k: v.astype(mx.float32) for k, v in weights.items()})
    if loaded != len(weights):
        raise RuntimeError(f"kokoro-mlx loaded {loaded} of the {len(weights)} demo weights")
    expected = dict(tree_flatten(model.parameters()))
    for key, value in dict(tree_flatten(fresh.parameters())).items():
        if key.startswith(COMPUTED):
            continue
        if not mx.array_equal(value, expected[key]).item():
            raise RuntimeError(f"demo Kokoro weight {key} does not survive kokoro-mlx's loader")


def _voice(index: int) -> mx.array:
    # A real voice pack varies slowly with the input length; a random base
    # plus a small per-length wobble mimics that.
    key = mx.random.key(SEED * 100 + index)
    base_key, wobble_key = mx.random.split(key)
    base = mx.random.normal((1, 1, VOICE_SHAPE[2]), key=base_key) * 0.5
    wobble = mx.random.normal(VOICE_SHAPE, key=wobble_key) * 0.05
    return (base + wobble).astype(mx.float32)


README = """\
# {name}

Random-weight DEMO Kokoro text-to-speech model made offline by mlx-gateway \
(demos/kokoro.py). Its audio is noise; it exists to exercise the real \
kokoro-mlx code path without downloads.

- architecture: Kokoro-82M's (kokoro-mlx 0.1.4 classes), PL-BERT shrunk to \
64 wide ({params:,} parameters, bfloat16, seed {seed})
- durations: the duration projection is cut short (1-3 frames of 25 ms per phoneme)
- voices: {voices} (random style vectors)
- 24 kHz mono
"""


def create_model(out_dir: Path) -> Path:
    """(Re)create the demo Kokoro as ``out_dir/NAME`` (staged, then renamed into place)."""
    final = Path(out_dir) / NAME
    with staged_folder(final, _fingerprint()) as staging:
        model, weights = _model()
        _check_round_trip(model, weights)
        mx.save_safetensors(str(staging / "kokoro-v1_0.safetensors"), weights)
        _write_json(staging / "config.json", _config())
        (staging / "voices").mkdir()
        for i, voice in enumerate(VOICES):
            mx.save_safetensors(
                str(staging / "voices" / f"{voice}.safetensors"), {"voice": _voice(i)}
            )
        n_params = sum(w.size for w in weights.values())
        text = README.format(name=NAME, params=n_params, seed=SEED, voices=", ".join(VOICES))
        (staging / "README.md").write_text(text, encoding="utf-8")
    return final


def ensure_demo_kokoro(out_root: Path) -> Path:
    return ensure_folder(out_root, NAME, is_complete, create_model)[0]


def main() -> None:
    builder_main(__doc__ or NAME, NAME, is_complete, create_model)


if __name__ == "__main__":
    main()
