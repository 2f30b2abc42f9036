"""structlog setup shared by the gateway, supervisors and workers.

``text`` (the default): key=value lines on stderr; honcho prefixes each
process's lines with its Procfile entry name, so every line is attributable.
``json`` (``[gateway] log_format = "json"``): one JSON object a line, for a
log collector, each with ``request_id``, ``house_id`` and ``model`` (null
outside a request), the standard library's records (uvicorn's, libraries')
rendered the same way.

The gateway binds the ids per request (structlog contextvars); a worker binds
its model for the whole process, and a job's ids while it takes the job in.
Its later lines about the job name it (``job=...``): :data:`JOB_IDS` adds that
job's ids to them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor

from protocol.messages import Job

LogFormat = Literal["text", "json"]
CORRELATION_KEYS = ("request_id", "house_id", "model")


class JobIds:
    """The request and house ids of the jobs a worker holds, by job id: a
    processor adding them to each line that names a job and carries none."""

    def __init__(self) -> None:
        self._ids: dict[str, tuple[str, str]] = {}

    def add(self, job_id: str, request_id: str, house_id: str) -> None:
        if request_id or house_id:
            self._ids[job_id] = (request_id, house_id)

    def discard(self, job_id: str) -> None:
        self._ids.pop(job_id, None)

    def __call__(self, logger: Any, method: str, event_dict: EventDict) -> EventDict:
        ids = self._ids.get(event_dict.get("job", ""))
        if ids is not None:
            event_dict.setdefault("request_id", ids[0] or None)
            event_dict.setdefault("house_id", ids[1] or None)
        return event_dict


JOB_IDS = JobIds()


def _every_correlation_key(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    for key in CORRELATION_KEYS:
        if not event_dict.get(key):
            event_dict[key] = None
    return event_dict


def _no_empty_correlation_key(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    for key in CORRELATION_KEYS:
        if key in event_dict and not event_dict[key]:
            del event_dict[key]
    return event_dict


def configure_logging(process: str, log_format: LogFormat = "text") -> None:
    level = getattr(logging, os.environ.get("MLX_GATEWAY_LOG_LEVEL", "INFO").upper(), logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        JOB_IDS,
        structlog.processors.add_log_level,
    ]
    renderer: Processor
    if log_format == "json":
        shared += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _every_correlation_key,
            structlog.processors.format_exc_info,
        ]
        renderer = structlog.processors.JSONRenderer()
    else:
        shared += [
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            _no_empty_correlation_key,
            structlog.processors.format_exc_info,
        ]
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    _configure_stdlib(level, log_format, shared, renderer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)


def _configure_stdlib(
    level: int, log_format: LogFormat, shared: list[Processor], renderer: Processor
) -> None:
    if log_format == "text":
        logging.basicConfig(level=level, format="%(message)s")
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def job_context(job: Job) -> dict[str, str | None]:
    """A job's id and its request's correlation ids, as log context."""
    return {"job": job.id, "request_id": job.request_id or None, "house_id": job.house_id or None}
