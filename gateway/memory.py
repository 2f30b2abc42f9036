"""Memory admission: the budget, what each model needs, and what a load may evict.

A model's need before it has served is an estimate: its weights (the sizes
of its ``*.safetensors`` files, in its folder or the Hugging Face cache),
plus the cache its options allow (an LLM's ``prompt_cache_bytes``), plus a
process overhead; ``memory_estimate`` in its config replaces the guess. Once
it has served, the peak the process reported (its Pong stats) replaces the
estimate. The gateway never imports MLX: on Apple silicon the budget's
default comes from ``python -m workers.memory`` in a short subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from protocol.config import GatewaySettings, ModelConfig, parse_size
from protocol.messages import WorkerStats
from workers.weights import PACKAGE_PREFIX, package_folder

log = structlog.get_logger()

# Python, MLX and the family's libraries in a model process, before weights.
PROCESS_OVERHEAD = 256 * 2**20
# The LLM engine's default prefix-cache budget (workers/engines/llm.py).
LLM_PROMPT_CACHE_BYTES = 1 << 30
APPLE_SHARE, RAM_SHARE = 0.9, 0.8

GB = 1e9


def gb(n: int) -> str:
    return f"{n / GB:.2f} GB"


@dataclass(frozen=True)
class Budget:
    bytes: int
    # How it was found: "config", "recommended_working_set" (Apple silicon) or "ram".
    source: str


async def machine_memory() -> dict[str, int]:
    """Physical memory; on Apple silicon also MLX's recommended working set."""
    if sys.platform != "darwin":
        return {"total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.memory", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    try:
        return {k: int(v) for k, v in json.loads(out).items()}
    except (ValueError, AttributeError):
        log.warning("could not read the machine's memory from MLX", output=out[:200])
        return {"total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}


def budget(settings: GatewaySettings, machine: dict[str, int]) -> Budget:
    """``memory_budget`` from the config (bytes, or a share of the machine), else
    90% of the recommended working set on Apple silicon, else 80% of RAM."""
    recommended = machine.get("recommended_working_set")
    if settings.memory_budget is not None:
        value = parse_size(settings.memory_budget)
        if isinstance(value, float):
            return Budget(int(value * (recommended or machine["total"])), "config")
        return Budget(value, "config")
    if recommended:
        return Budget(int(APPLE_SHARE * recommended), "recommended_working_set")
    return Budget(int(RAM_SHARE * machine["total"]), "ram")


def weights_bytes(model: ModelConfig) -> int | None:
    """The model's safetensors bytes; None when its files are not here (a hub
    id not yet downloaded)."""
    folder = _weights_folder(model.path)
    if folder is None or not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))


def _weights_folder(path: str) -> Path | None:
    if path.startswith(PACKAGE_PREFIX):
        try:
            return package_folder(path)
        except FileNotFoundError:
            return None
    local = Path(path).expanduser()
    if local.is_absolute() or path.startswith(".") or local.exists():
        return local
    # A hub id: the newest snapshot in the Hugging Face cache, if any.
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub"
    )
    snapshots = Path(hub) / f"models--{path.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    found = sorted(snapshots.glob("*"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def cache_bytes(model: ModelConfig) -> int:
    """What the model's options let it cache beyond its weights."""
    if model.family == "llm":
        return int(model.options.get("prompt_cache_bytes", LLM_PROMPT_CACHE_BYTES))
    return 0


def estimate(model: ModelConfig) -> int:
    """Bytes to reserve for a model that has not served yet."""
    if model.memory_estimate is not None:
        return int(parse_size(model.memory_estimate))
    return (weights_bytes(model) or 0) + cache_bytes(model) + PROCESS_OVERHEAD


def footprint(stats: WorkerStats) -> int:
    """A process's memory from its Pong: on Apple silicon MLX's buffers live
    outside the resident set and add to it; on the CPU they are part of it."""
    if sys.platform == "darwin":
        return stats.rss_bytes + stats.mlx_peak_bytes
    return max(stats.rss_bytes, stats.mlx_peak_bytes)


@dataclass(frozen=True)
class Holding:
    """A model that holds (or may hold) memory now."""

    name: str
    reserved: int
    evictable: bool  # loaded, idle, not pinned
    last_used: float


@dataclass
class Plan:
    """A load's admission: ``evict`` (least recently used first) makes it fit."""

    fits: bool
    need: int
    free: int
    budget: int
    evict: list[str] = field(default_factory=list)
    evictable: list[Holding] = field(default_factory=list)

    def refusal(self, model: str, allowed_to_evict: bool) -> str:
        could = ", ".join(f"{h.name} ({gb(h.reserved)})" for h in self.evictable) or "none"
        advice = (
            "unload a model, or raise memory_budget"
            if allowed_to_evict
            else 'pass "evict": true, set eviction = "lru", or unload a model'
        )
        return (
            f"model {model!r} needs {gb(self.need)} but {gb(self.free)} of the "
            f"{gb(self.budget)} memory budget is free; idle unpinned models that could "
            f"be evicted: {could}; {advice}"
        )


def plan_load(need: int, budget: int, holdings: Iterable[Holding], *, evict: bool) -> Plan:
    held = list(holdings)
    free = budget - sum(h.reserved for h in held)
    candidates = sorted((h for h in held if h.evictable), key=lambda h: h.last_used)
    plan = Plan(need <= free, need, free, budget, evictable=candidates)
    if plan.fits or not evict:
        return plan
    freed = free
    for victim in candidates:
        plan.evict.append(victim.name)
        freed += victim.reserved
        if need <= freed:
            plan.fits = True
            return plan
    plan.evict = []  # evicting everything idle would not be enough: evict nothing
    return plan
