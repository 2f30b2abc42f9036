"""Shared fixtures. OpenBLAS is loaded first, with one thread, exactly as the
supervisor launches workers, so in-process reference generations run on the
same BLAS as the workers (a 2e-5 difference can flip a greedy argmax)."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workers.blas import preload_openblas  # noqa: E402

preload_openblas()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_models() -> dict[str, Path]:
    """The offline demo models (created once, under the repo's models/)."""
    from workers.demo_models import ensure_demo_models

    paths = ensure_demo_models(ROOT / "models")
    return {p.name: p for p in paths}
