"""A client that hangs up before its answer is ready: the work stops, the answer is a 499.

Used by every handler that answers as a whole (a streamed response notices a
hang-up itself: Starlette cancels its body, whose job streams then close).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response

# nginx's "client closed request": nobody is listening for the answer.
CLIENT_CLOSED = 499


async def respond_while_connected(request: Request, work: Awaitable[Response]) -> Response:
    """``work``'s response, unless the client disconnects first: then ``work``
    is cancelled and the answer is a 499. Work that reads job streams closes
    them when cancelled, which cancels the jobs in the worker.

    Call it once the body has been read: the next ASGI ``receive`` then only
    returns when the client goes away (``http.disconnect``).
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED)
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
