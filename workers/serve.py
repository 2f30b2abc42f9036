"""A model process: ``python -m workers.serve --model NAME [--config FILE]``.

Started (and restarted) by :mod:`workers.supervisor`, one per model. The
model's name is in the command line and the process title, so ``ps`` tells
which process serves which model.
"""

from __future__ import annotations

import os
import signal
import sys

# No torch, by design: transformers' import-time advisory "PyTorch was not
# found..." says nothing true of a model process. Its advisories only (its
# warnings still show); before any engine imports transformers.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from workers.blas import preload_openblas  # noqa: E402

preload_openblas()  # before anything imports mlx.core

import setproctitle  # noqa: E402
import structlog  # noqa: E402

from protocol.config import model_from_command_line  # noqa: E402
from protocol.logs import configure_logging  # noqa: E402
from workers.engines import build_engine  # noqa: E402
from workers.memory import apply_limit_from_environment  # noqa: E402
from workers.runtime import WorkerRuntime  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    config, model = model_from_command_line(__doc__, argv)
    setproctitle.setproctitle(f"mlx-gateway worker {model.name} ({model.family})")
    configure_logging(f"worker:{model.name}", config.gateway.log_format)
    structlog.contextvars.bind_contextvars(model=model.name)
    structlog.get_logger().info("starting", model=model.name, path=model.path)
    apply_limit_from_environment()
    runtime = WorkerRuntime(model, lambda: build_engine(model))
    signal.signal(signal.SIGTERM, runtime.drain)
    signal.signal(signal.SIGINT, runtime.stop)
    sys.exit(runtime.run())


if __name__ == "__main__":
    main()
