"""Sentence embeddings (family "embeddings"): many inputs per forward pass.

``submit`` tokenizes a job's inputs (or takes its token ids) and checks them;
each ``step`` runs one forward pass over as many waiting inputs, of any jobs
in arrival order, as fit in ``max_batch_tokens`` padded tokens (at least
one), and pools their hidden states (:mod:`workers.engines.encoders`). A job
whose last input is done gets its :class:`~protocol.messages.Embeddings` (one
little-endian float32 vector per input, in order) and a ``Finished``.

The backend is the model folder's: BERT-family encoders (``model_type``
"bert") run on the MLX BERT here, anything else on mlx-lm as a language model
whose hidden states are pooled; ``backend`` overrides.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import numpy as np

from protocol.config import ModelConfig
from protocol.messages import (
    EmbeddingJob,
    Embeddings,
    Events,
    Finished,
    Job,
    Usage,
    WorkerStats,
)
from workers.engine import JobError, engine_options
from workers.engines.encoders import Encoder, Pooling, PoolingConfig, pool
from workers.weights import local_or_hub

BERT_TYPES = ("bert",)


class EmbeddingsOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of an ``embeddings`` model."""

    # "auto": "bert" if config.json's model_type is BERT's, else "llm" (mlx-lm).
    backend: Literal["auto", "bert", "llm"] = "auto"
    # Override the folder's sentence-transformers pooling (modules.json).
    pooling: Pooling | None = None
    normalize: bool | None = None
    # Padded tokens (inputs x longest input) in one forward pass. One pass is
    # one engine step: 512 MiniLM tokens take ~0.5 s on a 2-core CPU (the
    # step bound the runtime wants); a GPU wants far more (8192+).
    max_batch_tokens: Annotated[int, msgspec.Meta(ge=1)] = 512
    # The longest input; default: the model's (sentence-transformers'
    # max_seq_length, else its position embeddings).
    max_input_tokens: int | None = None
    # Longer inputs are cut to max_input_tokens instead of refused (400).
    truncate: bool = False
    # Matryoshka models: the widths a request's `dimensions` may ask for
    # (vectors are cut, then re-normalised). Empty: only the model's own.
    matryoshka_dimensions: list[int] = []


@dataclass
class _Job:
    job_id: str
    dimensions: int
    vectors: list[np.ndarray | None]
    prompt_tokens: int
    left: int  # inputs not embedded yet


@dataclass
class _Input:
    job: _Job
    index: int
    ids: list[int]


class EmbeddingsEngine:
    family = "embeddings"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, EmbeddingsOptions)
        self._waiting: deque[_Input] = deque()
        self._jobs: dict[str, _Job] = {}
        self._stats = WorkerStats()

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        from workers.engines.encoders import BertEncoder, LLMEncoder

        path = local_or_hub(self.config)
        folder = _model_folder(path)
        backend = self.options.backend
        if backend == "auto":
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
            backend = "bert" if model_type in BERT_TYPES else "llm"
        pooling = self._pooling_override(folder)
        limit = self.options.max_input_tokens
        self.encoder: Encoder = (
            BertEncoder(folder, pooling, limit)
            if backend == "bert"
            else LLMEncoder(str(folder), pooling, limit)
        )
        self.backend = backend
        width = self.encoder.width
        too_wide = [d for d in self.options.matryoshka_dimensions if not 0 < d <= width]
        if too_wide:
            raise ValueError(f"matryoshka_dimensions {too_wide} are not within 1..{width}")

    def _pooling_override(self, folder: Path) -> PoolingConfig | None:
        from workers.engines.encoders import read_pooling

        mode, normalize = self.options.pooling, self.options.normalize
        if mode is None and normalize is None:
            return None
        found = read_pooling(folder) or PoolingConfig()
        if normalize is None:
            normalize = found.normalize
        return PoolingConfig(mode or found.mode, normalize)

    # --- jobs ---------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if not isinstance(job, EmbeddingJob):
            raise JobError(
                f"model {self.config.name!r} is an embeddings model: use /v1/embeddings",
                param="model",
            )
        if not job.inputs:
            raise JobError("'input' must not be empty", param="input")
        dimensions = self._dimensions(job.dimensions)
        ids = self._token_ids(job.inputs)
        state = _Job(job.id, dimensions, [None] * len(ids), sum(map(len, ids)), len(ids))
        # Shortest first within a job: batches of similar lengths waste less padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        self._jobs[job.id] = state
        self._waiting.extend(_Input(state, i, ids[i]) for i in order)

    def _dimensions(self, asked: int | None) -> int:
        width = self.encoder.width
        if asked is None or asked == width:
            return width
        allowed = self.options.matryoshka_dimensions
        if asked in allowed:
            return asked
        which = (
            f"one of {sorted({*allowed, width})}"
            if allowed
            else f"only its full width, {width} (it has no Matryoshka truncation configured)"
        )
        raise JobError(
            f"model {self.config.name!r} cannot return {asked} dimensions: it supports {which}",
            param="dimensions",
        )

    def _token_ids(self, inputs: list[str | list[int]]) -> list[list[int]]:
        truncate = self.options.truncate
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        ids: list[list[int]] = [x if isinstance(x, list) else [] for x in inputs]
        if texts:
            encoded = self.encoder.tokenize([t for _, t in texts], truncate)
            for (i, _), tokens in zip(texts, encoded, strict=True):
                ids[i] = tokens
        limit, vocab = self.encoder.max_tokens, self.encoder.vocab_size
        for i, tokens in enumerate(ids):
            if not tokens:
                raise JobError(f"input[{i}] is empty", param=f"input[{i}]")
            if truncate and len(tokens) > limit:
                ids[i] = tokens = tokens[:limit]
            if len(tokens) > limit:
                raise JobError(
                    f"input[{i}] has {len(tokens)} tokens, more than this model's "
                    f"maximum of {limit}",
                    param=f"input[{i}]",
                    code="context_length_exceeded",
                )
            most = self.config.max_prompt_tokens
            if most is not None and len(tokens) > most:
                raise JobError(
                    f"input[{i}] has {len(tokens)} tokens, more than this model's "
                    f"max_prompt_tokens of {most}",
                    param=f"input[{i}]",
                    code="prompt_too_long",
                )
            bad = next((t for t in tokens if not 0 <= t < vocab), None)
            if bad is not None:
                raise JobError(
                    f"input[{i}] has token id {bad}, outside this model's vocabulary "
                    f"(0..{vocab - 1})",
                    param=f"input[{i}]",
                )
        return ids

    def cancel(self, job_id: str) -> bool:
        if self._jobs.pop(job_id, None) is None:
            return False
        self._waiting = deque(x for x in self._waiting if x.job.job_id != job_id)
        return True

    def has_work(self) -> bool:
        return bool(self._waiting)

    def stats(self) -> WorkerStats:
        self._stats.active = len(self._jobs)
        self._stats.queued = len(self._waiting)
        return self._stats

    # --- forward passes -----------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """One forward pass over the next batch (its size is bounded by tokens, not time)."""
        events = Events(deltas=[], finished=[], failed=[], outputs=[])
        batch = self._next_batch()
        if not batch:
            return events
        vectors = self.embed([x.ids for x in batch])
        for item, vector in zip(batch, vectors, strict=True):
            job = item.job
            job.vectors[item.index] = vector
            job.left -= 1
            if job.left == 0:
                self._finish(job, events)
        return events

    def _next_batch(self) -> list[_Input]:
        budget = self.options.max_batch_tokens
        batch: list[_Input] = []
        longest = 0
        while self._waiting:
            head = self._waiting[0]
            wider = max(longest, len(head.ids))
            if batch and wider * (len(batch) + 1) > budget:
                break
            batch.append(self._waiting.popleft())
            longest = wider
        return batch

    def embed(self, ids: list[list[int]]) -> np.ndarray:
        """Pooled vectors (N, width) of token id lists, in one padded forward pass."""
        import mlx.core as mx

        lengths = [len(x) for x in ids]
        padded = np.zeros((len(ids), max(lengths)), dtype=np.int32)
        for row, tokens in enumerate(ids):
            padded[row, : len(tokens)] = tokens
        length_array = mx.array(lengths)
        hidden = self.encoder.hidden_states(mx.array(padded), length_array)
        self._stats.prompt_tokens += sum(lengths)
        return pool(hidden, length_array, self.encoder.pooling)

    def _finish(self, job: _Job, events: Events) -> None:
        del self._jobs[job.job_id]
        matrix = np.stack([v for v in job.vectors if v is not None])
        if job.dimensions < matrix.shape[1]:
            matrix = matrix[:, : job.dimensions]
            if self.encoder.pooling.normalize:
                matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        matrix = np.ascontiguousarray(matrix, dtype="<f4")
        events.outputs.append(
            Embeddings(job.job_id, job.dimensions, [row.tobytes() for row in matrix])
        )
        events.finished.append(Finished(job.job_id, "stop", Usage(job.prompt_tokens, 0)))
        self._stats.requests_finished += 1


def _model_folder(path: str) -> Path:
    """A local folder for ``path``: itself, or the hub snapshot (downloaded at startup)."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
    return Path(snapshot_download(path, allow_patterns=patterns))
