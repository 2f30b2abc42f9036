"""structlog setup shared by the gateway, supervisors and workers.

Plain key=value lines on stderr: honcho prefixes each process's lines with
its Procfile entry name, so every line is attributable without JSON.
"""

from __future__ import annotations

import logging
import os

import structlog


def configure_logging(process: str) -> None:
    level = getattr(logging, os.environ.get("MLX_GATEWAY_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=__import__("sys").stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
