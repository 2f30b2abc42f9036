"""A model process: ``python -m workers.serve --model NAME [--config FILE]``.

Started (and restarted) by :mod:`workers.supervisor`, one per model. The
model's name is in the command line and the process title, so ``ps`` tells
which process serves which model.
"""

from __future__ import annotations

import argparse

from workers.blas import preload_openblas

preload_openblas()  # before anything imports mlx.core

import setproctitle  # noqa: E402
import structlog  # noqa: E402

from protocol.config import load_config  # noqa: E402
from protocol.logs import configure_logging  # noqa: E402
from workers.engines import build_engine  # noqa: E402
from workers.runtime import WorkerRuntime  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="model name from the config")
    parser.add_argument("--config", default=None, help="config file (default $MLX_GATEWAY_CONFIG)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    model = config.model(args.model)
    setproctitle.setproctitle(f"mlx-gateway worker {model.name} ({model.family})")
    configure_logging(f"worker:{model.name}")
    structlog.get_logger().info("starting", model=model.name, path=model.path)
    WorkerRuntime(model, lambda: build_engine(model)).run()


if __name__ == "__main__":
    main()
