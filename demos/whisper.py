"""Create the offline random-weight demo Whisper model.

``python -m demos.whisper --out models`` writes ``models/demo-whisper-tiny``:
a tiny Whisper made from mlx-whisper's own classes (``ModelDimensions``,
``Whisper``; 2 audio and 2 text layers, width 64, random float16 weights),
saved the way mlx-community's Whisper folders are (``config.json`` holding the
dimensions, ``weights.safetensors``), so ``mlx_whisper.load_models.load_model``
and ``transcribe`` read it through the same code path as a real model. Its
vocabulary size (51865) is the multilingual one, so mlx-whisper's bundled
tokenizer serves it with no download.

Its transcripts are gibberish. ``n_text_ctx`` is small (32) because a random
decoder never says "end of text": each 30-s window then stops after at most
16 tokens. Idempotent and deterministic, like the other demo builders.
"""

# MLX must find OpenBLAS already loaded, so this comes before anything imports mlx.
from workers.blas import preload_openblas

preload_openblas()

# ruff: noqa: E402
import hashlib
import json
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from demos.llm import (
    COMPLETE_MARKER,
    _write_json,
    builder_main,
    ensure_folder,
    staged_folder,
)

NAME = "demo-whisper-tiny"
FORMAT_VERSION = 1
SEED = 5

# n_mels 80 and n_audio_ctx 1500 are fixed by Whisper's front end (a 30-s
# window is 3000 mel frames, halved by the encoder's strided convolution).
DIMENSIONS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 64,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": 51865,
    "n_text_ctx": 32,
    "n_text_state": 64,
    "n_text_head": 2,
    "n_text_layer": 2,
}

README = """\
# {name}

Random-weight DEMO Whisper model made offline by mlx-gateway \
(demos/whisper.py). Its transcripts are gibberish; it exists to exercise \
the real mlx-whisper code path (ffmpeg decoding, log-mel, encoder, decoder with \
timestamp rules, word alignment) without downloads.

- architecture: Whisper ({params:,} parameters, float16, seed {seed})
- dimensions: {dims}
- tokenizer: mlx-whisper's bundled multilingual tokenizer (51865 tokens)
"""


def _fingerprint() -> str:
    return hashlib.sha256(json.dumps([FORMAT_VERSION, SEED, DIMENSIONS]).encode()).hexdigest()[:16]


def is_complete(model_dir: Path) -> bool:
    try:
        return (model_dir / COMPLETE_MARKER).read_text().strip() == _fingerprint()
    except FileNotFoundError:
        return False


def _weights() -> tuple[dict[str, mx.array], int]:
    from mlx_whisper.whisper import ModelDimensions, Whisper

    mx.random.seed(SEED)
    model = Whisper(ModelDimensions(**DIMENSIONS), dtype=mx.float16)
    # Decoding rejects float32 audio features; the default predicate converts
    # floating parameters only, so alignment_heads stays an integer array.
    model.set_dtype(mx.float16)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    params = sum(w.size for k, w in weights.items() if k != "alignment_heads")
    return weights, params


def create_model(out_dir: Path) -> Path:
    """(Re)create the demo Whisper as ``out_dir/NAME`` (staged, then renamed into place)."""
    final = Path(out_dir) / NAME
    if (final / COMPLETE_MARKER).exists():
        # An outdated demo folder of ours. (mlx-whisper's config.json takes no
        # extra keys, so the marker file is what says the folder is ours;
        # staged_folder refuses to delete anything else.)
        shutil.rmtree(final)
    with staged_folder(final, _fingerprint()) as staging:
        weights, n_params = _weights()
        mx.save_safetensors(str(staging / "weights.safetensors"), weights)
        _write_json(staging / "config.json", {"model_type": "whisper", **DIMENSIONS})
        dims = ", ".join(f"{k} {v}" for k, v in DIMENSIONS.items())
        text = README.format(name=NAME, params=n_params, seed=SEED, dims=dims)
        (staging / "README.md").write_text(text, encoding="utf-8")
    return final


def ensure_demo_whisper(out_root: Path) -> Path:
    return ensure_folder(out_root, NAME, is_complete, create_model)[0]


def main() -> None:
    builder_main(__doc__ or NAME, NAME, is_complete, create_model)


if __name__ == "__main__":
    main()
