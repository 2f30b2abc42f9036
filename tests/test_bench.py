"""The benchmarks are not run by the suite (they take minutes and want an idle
machine), but every script must at least import: they share bench/common.py and
the e2e harness, and a renamed helper would otherwise go unnoticed until the
next measurement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def test_every_benchmark_script_imports() -> None:
    scripts = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "common")
    assert "llm_streams" in scripts
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r})\n" + "".join(
        f"import {name}\n" for name in scripts
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
