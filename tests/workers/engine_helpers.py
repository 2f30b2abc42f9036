"""Driving an LLM engine in-process, as the worker runtime does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol.config import ModelConfig
from protocol.messages import Events
from workers.engines.llm import LLMEngine


def load_engine(name: str, path: Path, **options: Any) -> LLMEngine:
    config = ModelConfig(
        name=name, family="llm", path=str(path), endpoint="inproc://unused", options=options
    )
    engine = LLMEngine(config)
    engine.load()
    return engine


def run_to_end(engine: LLMEngine) -> list[Events]:
    """Step until every job has finished; the events of each step."""
    steps = []
    while engine.has_work():
        steps.append(engine.step(0.005))
    return steps


def text_of(steps: list[Events], job_id: str) -> str:
    deltas = "".join(d.text for s in steps for d in s.deltas if d.id == job_id)
    return deltas + "".join(f.text for s in steps for f in s.finished if f.id == job_id)
