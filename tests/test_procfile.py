"""The committed Procfile is exactly what the default config generates."""

from __future__ import annotations

from pathlib import Path

from gateway.procfile import procfile
from protocol.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_procfile_matches_the_default_config() -> None:
    expected = procfile(load_config(ROOT / "configs/demo.toml"))
    assert (ROOT / "Procfile").read_text() == expected, "run `make procfile` and commit"


def test_procfile_has_the_gateway_and_one_supervised_entry_per_model() -> None:
    config = load_config(ROOT / "configs/demo.toml")
    lines = procfile(config).splitlines()
    assert lines[0] == "gateway: python -m gateway"
    assert lines[1:] == [
        f"{m.name}: python -m workers.supervisor --model {m.name}" for m in config.models
    ]
