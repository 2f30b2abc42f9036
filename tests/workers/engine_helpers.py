"""Driving an engine in-process, as the worker runtime does: built by the
worker's own ``build_engine``, loaded, and stepped until its jobs end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from protocol.config import Family, ModelConfig
from protocol.messages import Events, Job
from workers.engine import Engine
from workers.engines import build_engine
from workers.engines.llm import LLMEngine

EngineT = TypeVar("EngineT", bound=Engine)


def loaded(
    kind: type[EngineT], family: Family, name: str, path: str | Path, **options: Any
) -> EngineT:
    """A loaded engine of ``kind``, built as the worker builds it."""
    config = ModelConfig(
        name=name, family=family, path=str(path), endpoint="inproc://unused", options=options
    )
    engine = build_engine(config)
    assert isinstance(engine, kind)
    engine.load()
    return engine


def load_engine(name: str, path: Path, **options: Any) -> LLMEngine:
    return loaded(LLMEngine, "llm", name, path, **options)


def submitted(engine: Engine, job: Job) -> list[Events]:
    """Submit ``job``: the events it was answered with at once, if it was."""
    answered = engine.submit(job)
    return [answered] if answered is not None else []


def run_to_end(engine: Engine, budget_s: float = 0.005) -> list[Events]:
    """Step until every job has finished; the events of each step."""
    steps = []
    while engine.has_work():
        steps.append(engine.step(budget_s))
    return steps


def text_of(steps: list[Events], job_id: str) -> str:
    deltas = "".join(d.text for s in steps for d in s.deltas if d.id == job_id)
    return deltas + "".join(f.text for s in steps for f in s.finished if f.id == job_id)
