"""The queue of the engines that serve one job at a time."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import WorkerStats
from workers.engines.one_at_a_time import OneAtATime


@dataclass
class Job:
    job_id: str


def test_jobs_run_in_arrival_order_one_at_a_time() -> None:
    jobs: OneAtATime[Job] = OneAtATime()
    assert not jobs.has_work() and jobs.start_next() is None
    jobs.add(Job("a"))
    jobs.add(Job("b"))
    assert jobs.start_next() == Job("a")
    assert jobs.start_next() is None  # "a" still runs
    stats = jobs.count(WorkerStats())
    assert (stats.active, stats.queued) == (1, 1)
    jobs.finish()
    assert jobs.start_next() == Job("b")
    jobs.finish()
    assert not jobs.has_work()


def test_cancel_finds_the_running_or_a_waiting_job_and_hands_it_back() -> None:
    jobs: OneAtATime[Job] = OneAtATime()
    for job_id in "abc":
        jobs.add(Job(job_id))
    jobs.start_next()
    assert jobs.cancel("b") == Job("b")
    assert jobs.cancel("a") == Job("a") and jobs.running is None
    assert jobs.cancel("a") is None
    assert jobs.clear() is None and not jobs.has_work()
