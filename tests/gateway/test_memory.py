"""Memory admission: the budget, estimates, and which models a load evicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.memory import (
    LLM_PROMPT_CACHE_BYTES,
    PROCESS_OVERHEAD,
    Holding,
    budget,
    estimate,
    footprint,
    plan_load,
)
from protocol.config import ConfigError, GatewaySettings, ModelConfig, parse_size
from protocol.messages import WorkerStats

GB = 10**9


def model(path: str, family: str = "llm", **kw: object) -> ModelConfig:
    return ModelConfig("m", family, path, "tcp://127.0.0.1:1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value"),
    [(1234, 1234), ("24 GB", 24 * GB), ("20GiB", 20 * 2**30), ("512 MiB", 512 * 2**20)]
    + [("75%", 0.75), ("1.5 gb", int(1.5 * GB))],
)
def test_sizes_are_bytes_or_a_share(text: int | str, value: int | float) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["lots", "12 parsecs", "0%", "150%", -1])
def test_a_bad_size_is_a_config_error(text: int | str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_default_budget_is_80_percent_of_ram_or_90_percent_of_the_working_set() -> None:
    settings = GatewaySettings()
    assert budget(settings, {"total": 100 * GB}).bytes == 80 * GB
    apple = {"total": 100 * GB, "recommended_working_set": 70 * GB}
    assert budget(settings, apple).bytes == 63 * GB
    assert budget(settings, apple).source == "recommended_working_set"


def test_configured_budget_wins_and_a_share_is_of_the_machine() -> None:
    assert budget(GatewaySettings(memory_budget="8 GB"), {"total": 100 * GB}).bytes == 8 * GB
    half = budget(GatewaySettings(memory_budget="50%"), {"total": 100 * GB})
    assert half.bytes == 50 * GB and half.source == "config"


def test_estimate_is_weights_plus_the_cache_budget_plus_overhead(tmp_path: Path) -> None:
    (tmp_path / "model-00001.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model-00002.safetensors").write_bytes(b"x" * 500)
    (tmp_path / "tokenizer.json").write_bytes(b"x" * 10_000)  # not weights
    llm = model(str(tmp_path), options={"prompt_cache_bytes": 2000})
    assert estimate(llm) == 1500 + 2000 + PROCESS_OVERHEAD
    assert estimate(model(str(tmp_path))) == 1500 + LLM_PROMPT_CACHE_BYTES + PROCESS_OVERHEAD
    assert estimate(model(str(tmp_path), "whisper")) == 1500 + PROCESS_OVERHEAD
    assert estimate(model(str(tmp_path), memory_estimate="3 GB")) == 3 * GB


def test_a_hub_id_is_found_in_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "models--org--name" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x" * 700)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert estimate(model("org/name", "kokoro")) == 700 + PROCESS_OVERHEAD
    assert estimate(model("org/not-downloaded", "kokoro")) == PROCESS_OVERHEAD


def test_footprint_on_the_cpu_is_the_larger_of_rss_and_mlx_peak() -> None:
    assert footprint(WorkerStats(rss_bytes=300, mlx_peak_bytes=200)) in (300, 500)


def holding(name: str, gb: int, *, idle: bool = True, used: float = 0.0) -> Holding:
    return Holding(name, gb * GB, idle, used)


def test_a_load_that_fits_evicts_nothing() -> None:
    plan = plan_load(2 * GB, 10 * GB, [holding("a", 4)], evict=True)
    assert plan.fits and plan.evict == [] and plan.free == 6 * GB


def test_without_eviction_a_load_that_does_not_fit_is_refused_naming_the_numbers() -> None:
    held = [holding("a", 4, used=1), holding("b", 4, used=2)]
    plan = plan_load(3 * GB, 10 * GB, held, evict=False)
    assert not plan.fits and plan.evict == []
    message = plan.refusal("c", allowed_to_evict=False)
    assert "'c' needs 3.00 GB" in message and "2.00 GB of the 10.00 GB" in message
    assert "a (4.00 GB), b (4.00 GB)" in message and "evict" in message


def test_lru_evicts_the_least_recently_used_idle_models_first_and_only_as_many_as_needed() -> None:
    held = [
        holding("newest", 2, used=30),
        holding("oldest", 2, used=10),
        holding("busy", 2, idle=False, used=0),  # in use (or pinned): never evicted
        holding("middle", 2, used=20),
    ]
    plan = plan_load(5 * GB, 10 * GB, held, evict=True)
    assert plan.fits and plan.evict == ["oldest", "middle"]


def test_when_evicting_every_idle_model_is_not_enough_nothing_is_evicted() -> None:
    held = [holding("idle", 2), holding("busy", 6, idle=False)]
    plan = plan_load(5 * GB, 10 * GB, held, evict=True)
    assert not plan.fits and plan.evict == []
    assert [h.name for h in plan.evictable] == ["idle"]
