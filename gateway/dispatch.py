"""Handing a request's jobs to its model's worker: what every handler does the same way.

Each job carries the request's correlation ids into the worker (its log
lines about the job name them), the request's log context gains the model,
the queue time (arrival until the jobs are sent) is observed, and each job's
stream gets a :class:`~gateway.job_timing.JobTimer`.
"""

from __future__ import annotations

import time

import structlog
from starlette.requests import Request

from gateway.job_stream import JobStream
from gateway.job_timing import JobTimer
from gateway.metrics import ModelMetrics
from gateway.phase4 import correlation
from gateway.worker_client import WorkerClient
from protocol.messages import Job


async def submit_jobs(
    request: Request, worker: WorkerClient, jobs: list[Job], *, timed: bool = True
) -> list[JobStream]:
    """Send the jobs of one request (its ``n`` choices): all or none, as
    :meth:`WorkerClient.submit_all`, whose 503 and 429 it raises. Not
    ``timed``: no metrics (a token count is not a request served)."""
    found = correlation(request)
    model = worker.model
    structlog.contextvars.bind_contextvars(model=model.name)
    for job in jobs:
        job.request_id = found.request_id
        job.house_id = found.house_id or ""
    streams = await worker.submit_all(jobs)
    if not timed:
        return streams
    metrics: ModelMetrics = request.app.state.model_metrics
    series = metrics.of(model.name)
    series.request_queue_time.observe(time.perf_counter() - found.arrived)
    for stream in streams:
        stream.observer = JobTimer(series, model.family, found.arrived)
    return streams


async def submit_job(
    request: Request, worker: WorkerClient, job: Job, *, timed: bool = True
) -> JobStream:
    (stream,) = await submit_jobs(request, worker, [job], timed=timed)
    return stream
