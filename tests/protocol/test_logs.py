"""Log lines: JSON ones carry request id, house id and model; a worker's lines
about a job carry that job's ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from protocol.logs import JOB_IDS, configure_logging, job_context
from protocol.messages import ChatJob, ChatMessage, SamplingParams


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_the_correlation_keys_null_outside_a_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("gateway", "json")
    log = structlog.get_logger()
    log.info("started")
    with structlog.contextvars.bound_contextvars(request_id="r-1", house_id="h-1", model="m"):
        log.info("request", status=200)
    first, second = json_lines(capsys.readouterr().err)
    assert first["event"] == "started" and first["process"] == "gateway"
    assert (first["request_id"], first["house_id"], first["model"]) == (None, None, None)
    assert (second["request_id"], second["house_id"], second["model"]) == ("r-1", "h-1", "m")
    assert second["level"] == "info" and second["status"] == 200 and "timestamp" in second


def test_standard_library_records_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("gateway", "json")
    with structlog.contextvars.bound_contextvars(request_id="r-2"):
        logging.getLogger("a.library").warning("something %s", "odd")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "something odd" and line["logger"] == "a.library"
    assert line["request_id"] == "r-2" and "house_id" in line and "model" in line


def test_text_lines_leave_out_empty_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("worker:m", "text")
    with structlog.contextvars.bound_contextvars(request_id="r-3", house_id=None):
        structlog.get_logger().info("cancelled")
    err = capsys.readouterr().err
    assert "request_id=r-3" in err and "house_id" not in err


def test_a_line_naming_a_job_gets_its_requests_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("worker:m", "json")
    JOB_IDS.add("m-7", "r-7", "h-7")
    try:
        structlog.get_logger().warning("grammar_failed", job="m-7")
    finally:
        JOB_IDS.discard("m-7")
    structlog.get_logger().warning("grammar_failed", job="m-7")
    named, forgotten = json_lines(capsys.readouterr().err)
    assert (named["request_id"], named["house_id"]) == ("r-7", "h-7")
    assert forgotten["request_id"] is None


def test_a_jobs_log_context() -> None:
    job = ChatJob("m-1", [ChatMessage("user", "hi")], SamplingParams(), request_id="r", house_id="")
    assert job_context(job) == {"job": "m-1", "request_id": "r", "house_id": None}
