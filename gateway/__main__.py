"""``python -m gateway [--config FILE] [--port N]``: serve the OpenAI API."""

from __future__ import annotations

import argparse
import math
import sys

import setproctitle
import uvicorn

from gateway.app import create_app
from gateway.security import InsecureBindError, check_bind
from protocol.config import load_config
from protocol.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None, help="config file (default $MLX_GATEWAY_CONFIG)")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None, help="default $MLX_GATEWAY_PORT or 8000")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    host = args.host or config.gateway.host
    port = args.port or config.gateway.port
    try:
        check_bind(host, config.gateway)
    except InsecureBindError as exc:
        sys.exit(f"mlx-gateway: {exc}")
    setproctitle.setproctitle(f"mlx-gateway gateway {host}:{port}")
    log_format = config.gateway.log_format
    configure_logging("gateway", log_format)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        # JSON logs: uvicorn's records go through the root logger's JSON formatter.
        log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        # SIGTERM / Ctrl-C: stop accepting, let running requests finish.
        timeout_graceful_shutdown=math.ceil(config.gateway.shutdown_timeout),
    )


if __name__ == "__main__":
    main()
