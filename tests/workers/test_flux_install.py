"""The one environment imports every library the flux worker needs, in the
environment its supervisor gives a model process (OpenBLAS preloaded on Linux)."""

from __future__ import annotations

import subprocess
import sys

from protocol.config import ModelConfig
from workers.supervisor import child_env

CHECK = """
import mflux
import mlx.core as mx
from mflux.models.flux2.variants.txt2img.flux2_klein import Flux2Klein
a = mx.ones((64, 64))
assert (a @ a).sum().item() == 64 ** 3
print(mx.default_device())
"""


def test_mflux_and_mlx_import_in_the_worker_environment() -> None:
    model = ModelConfig(name="m", family="flux", path="unused", endpoint="tcp://127.0.0.1:1")
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        env=child_env(model),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # cpu on Linux (mlx[cpu]), gpu on Apple Silicon.
    assert done.stdout.strip() in ("Device(cpu, 0)", "Device(gpu, 0)")
