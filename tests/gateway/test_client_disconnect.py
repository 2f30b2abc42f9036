"""gateway/client_disconnect.py: work answered as a whole stops when the client hangs up."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from gateway.client_disconnect import CLIENT_CLOSED, respond_while_connected
from gateway.errors import APIError
from gateway.job_stream import JobStream
from protocol.messages import Delta


class Connection:
    """The ASGI side of one request whose body has been read: ``receive``
    answers only when the client hangs up."""

    def __init__(self) -> None:
        self.hung_up = asyncio.Event()
        self.request = Request({"type": "http", "method": "POST", "headers": []}, self.receive)

    async def receive(self) -> Message:
        await self.hung_up.wait()
        return {"type": "http.disconnect"}


async def test_the_works_response_is_the_answer() -> None:
    async def work() -> Response:
        return Response(b"done")

    response = await respond_while_connected(Connection().request, work())
    assert response.body == b"done"


async def test_a_hang_up_cancels_the_work_and_answers_499() -> None:
    connection = Connection()
    released: list[str] = []
    stream = JobStream("j", 600.0, lambda s: released.append(s.id))
    stream.put(Delta("j", "a", 1))

    async def work() -> Response:
        async for _ in stream.events():
            connection.hung_up.set()  # the client leaves while the job runs
        return Response(b"never")

    response = await respond_while_connected(connection.request, work())
    assert response.status_code == CLIENT_CLOSED == 499
    assert released == ["j"]  # and so the job is cancelled in its worker


async def test_an_error_of_the_work_is_raised() -> None:
    stream = JobStream("j", 0, lambda s: None)  # its time limit is over at once

    async def work() -> Response:
        async for _ in stream.events():
            pass
        return Response(b"never")

    with pytest.raises(APIError) as caught:
        await respond_while_connected(Connection().request, work())
    assert caught.value.status == 504
