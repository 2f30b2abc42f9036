"""The model process's entry (workers/serve.py): what it sets up before any engine loads."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# An engine's library importing transformers first, then a warning of its own.
IMPORT_AS_SERVE_DOES = """
import workers.serve
import transformers
transformers.logging.get_logger("transformers").warning("a real warning")
"""


def test_a_model_process_does_not_print_transformers_torch_advisory() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFORMERS_")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_AS_SERVE_DOES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "PyTorch was not found" not in done.stderr
    assert "a real warning" in done.stderr  # transformers' logging itself still speaks
