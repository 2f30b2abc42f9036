"""Which FLUX.2-klein a flux model is: mflux's ModelConfig for its
``base_model``, sized by the checkpoint folder's own configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def mflux_model_config(base_model: str, path: str) -> Any:
    """mflux's ModelConfig for ``base_model``, sized by the checkpoint's own
    transformer/ and text_encoder/config.json when ``path`` is a local folder
    that has them (a tiny or fine-tuned klein with other widths)."""
    import copy
    import inspect

    from mflux.models.common.config.model_config import ModelConfig
    from mflux.models.flux2.model.flux2_text_encoder.qwen3_text_encoder import Qwen3TextEncoder
    from mflux.models.flux2.model.flux2_transformer.transformer import Flux2Transformer

    try:
        base = ModelConfig.from_name(base_model)
    except Exception as exc:  # mflux raises its own error types for unknown names
        raise ValueError(f"unknown mflux base_model {base_model!r}: {exc}") from exc
    if not base.model_name.startswith("black-forest-labs/FLUX.2-klein"):
        raise ValueError(
            f"base_model {base_model!r} is not a FLUX.2-klein model; this engine runs "
            "mflux's FLUX.2-klein pipeline (flux2-klein-4b, -9b, -base-4b, -base-9b)"
        )
    config = copy.copy(base)
    folder = Path(path)
    for name, cls, attr in (
        ("transformer", Flux2Transformer, "transformer_overrides"),
        ("text_encoder", Qwen3TextEncoder, "text_encoder_overrides"),
    ):
        file = folder / name / "config.json"
        if not file.is_file():
            continue
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        found = {k: v for k, v in json.loads(file.read_text()).items() if k in accepted}
        if "axes_dims_rope" in found:
            found["axes_dims_rope"] = tuple(found["axes_dims_rope"])
        setattr(config, attr, {**getattr(base, attr), **found})
    return config
