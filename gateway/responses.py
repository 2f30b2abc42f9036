"""The Responses API: ``/v1/responses`` and its stored responses.

``POST /v1/responses`` turns a request into one :class:`ChatJob` (the same
job a chat completion sends, so every llm and vlm model serves it) and its
output into a Response (``responses_events``): returned whole, streamed as
the spec's events, or, with ``background``, run as a task whose result is
stored for ``GET`` (and ``POST .../cancel``). Responses with ``store`` (the
default) are kept in SQLite (``responses_store``) for ``previous_response_id``
chains, ``GET``, ``DELETE`` and ``input_items``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response as HTTPResponse

from gateway.body import decode_json
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.errors import APIError
from gateway.job_stream import JobStream
from gateway.registry import TEXT_FAMILIES
from gateway.responses_events import ResponseBuilder, encode_event, now
from gateway.responses_input import new_id
from gateway.responses_objects import (
    DeletedResponse,
    InputTokens,
    Item,
    ItemList,
    ReasoningOut,
    Response,
)
from gateway.responses_prompt import Prompt, build_prompt, count_tokens
from gateway.responses_schemas import InputTokensRequest, ResponseRequest
from gateway.responses_store import ResponseStore
from gateway.sse import sse_response
from gateway.text_pieces import pieces
from gateway.worker_client import WorkerClient
from protocol.config import GatewaySettings
from protocol.messages import ChatJob, SamplingParams

INCLUDABLE = ("reasoning.encrypted_content", "message.output_text.logprobs")


class ResponsesState:
    """The store (opened on first use) and the running background responses."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.store = ResponseStore(
            settings.responses_store,
            max_count=settings.responses_max_stored,
            max_age=settings.responses_max_age,
        )
        self.background: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for task in list(self.background.values()):
            task.cancel()
        await asyncio.gather(*self.background.values(), return_exceptions=True)
        self.store.close()


def _state(request: Request) -> ResponsesState:
    state: ResponsesState = request.app.state.responses
    return state


def _json(body: msgspec.Struct) -> HTTPResponse:
    return HTTPResponse(msgspec.json.encode(body), media_type="application/json")


async def create_response(request: Request) -> HTTPResponse:
    body = await decode_json(request, ResponseRequest)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    _reject_unsupported(body)
    # A client gone before its answer (or its stream) starts stops the work: a 499.
    return await respond_while_connected(request, _create(request, body, worker))


async def _create(request: Request, body: ResponseRequest, worker: WorkerClient) -> HTTPResponse:
    include = set(body.include or ())
    state = _state(request)
    prompt = await build_prompt(
        request,
        worker,
        state.store,
        input=body.input,
        instructions=body.instructions,
        tools=body.tools,
        tool_choice=body.tool_choice,
        text=body.text,
        previous_response_id=body.previous_response_id,
        truncation=body.truncation,
        max_output_tokens=body.max_output_tokens,
    )
    tools = prompt.tools
    logprobs = "message.output_text.logprobs" in include
    if worker.model.family == "vlm":
        _reject_for_vision(tools.setup.tools, tools.text_schema, logprobs)
    params = SamplingParams(
        max_tokens=body.max_output_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        logprobs=logprobs,
        top_logprobs=(body.top_logprobs or 0) if logprobs else 0,
        json_schema=tools.setup.json_schema or tools.text_schema,
    )
    job = ChatJob(worker.new_job_id(), prompt.messages, params, tools.setup.tools, tools.setup.mode)
    store = body.store is not False
    max_calls = body.max_tool_calls
    if body.parallel_tool_calls is False:
        max_calls = 1
    builder = ResponseBuilder(
        _skeleton(body, worker.model.name, prompt, store),
        encrypted_reasoning="reasoning.encrypted_content" in include,
        logprobs=logprobs,
        namespaces=tools.namespaces,
        max_calls=max_calls,
    )
    stream = await submit_job(request, worker, job)
    if body.background:
        return _start_background(state, builder, stream, prompt.items)
    if body.stream:
        await stream.started()  # a job the worker refuses is a 400, before any event

        def failed(exc: APIError) -> bytes:  # an unexpected error while streaming
            return b"".join(encode_event(event) for event in builder.fail(exc))

        return sse_response(
            _events(state, builder, stream, prompt.items if store else None), failed
        )
    response = await _whole(builder, stream)
    if store:
        state.store.put(response, prompt.items)
    return _json(response)


def _reject_unsupported(body: ResponseRequest) -> None:
    """400 naming the first field this server cannot honour."""
    unsupported = {
        "prompt": "reusable prompts are not supported by this server",
        "conversation": "conversations are not supported by this server; "
        "use 'previous_response_id'",
        "context_management": "context management is not supported by this server; "
        "'truncation': 'auto' drops the oldest items",
    }
    for field, message in unsupported.items():
        if getattr(body, field) is not None:
            raise APIError(400, message, param=field)
    for i, value in enumerate(body.include or ()):
        if value not in INCLUDABLE:
            raise APIError(
                400,
                f"'include' value {value!r} is not supported by this server "
                f"(supported: {', '.join(INCLUDABLE)})",
                param=f"include[{i}]",
            )
    if body.background and body.stream:
        raise APIError(
            400, "'background' with 'stream' is not supported by this server", param="stream"
        )
    if body.background and body.store is False:
        raise APIError(400, "'background' responses must be stored ('store': true)", param="store")
    metadata = body.metadata or {}
    if len(metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
        raise APIError(
            400,
            "'metadata' has at most 16 keys of up to 64 characters, values up to 512",
            param="metadata",
        )


def _reject_for_vision(tools: object, schema: str | None, logprobs: bool) -> None:
    for param, present in (("tools", tools), ("text.format", schema), ("include", logprobs)):
        if present:
            raise APIError(400, f"'{param}' is not supported by vision models yet", param=param)


def _skeleton(body: ResponseRequest, model: str, prompt: Prompt, store: bool) -> Response:
    reasoning = body.reasoning
    return Response(
        id=new_id("resp"),
        created_at=now(),
        status="in_progress",
        model=model,
        previous_response_id=body.previous_response_id,
        instructions=body.instructions,
        tools=prompt.tools.tools,
        tool_choice=prompt.tools.choice,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        max_tool_calls=body.max_tool_calls,
        truncation=body.truncation or "disabled",
        text=prompt.tools.text,
        reasoning=ReasoningOut(
            reasoning.effort if reasoning else None,
            (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        ),
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        top_logprobs=body.top_logprobs or 0,
        max_output_tokens=body.max_output_tokens,
        store=store,
        background=bool(body.background),
        metadata=body.metadata or {},
        prompt_cache_key=body.prompt_cache_key,
        safety_identifier=body.safety_identifier,
        user=body.user,
    )


async def _whole(builder: ResponseBuilder, stream: JobStream) -> Response:
    builder.start()
    async for piece in pieces(stream):
        builder.feed(piece)
        if piece.finished is not None:
            builder.finish(piece.finished)
    return builder.response


async def _events(
    state: ResponsesState,
    builder: ResponseBuilder,
    stream: JobStream,
    context: list[Item] | None,
) -> AsyncIterator[bytes]:
    """The stream's events; the response is stored once it has ended
    (completed, incomplete or failed), not if the client left first."""
    for event in builder.start():
        yield encode_event(event)
    try:
        async for piece in pieces(stream):
            for event in builder.feed(piece):
                yield encode_event(event)
            if piece.finished is not None:
                for event in builder.finish(piece.finished):
                    yield encode_event(event)
    except APIError as exc:
        for event in builder.fail(exc):
            yield encode_event(event)
    if context is not None:
        state.store.put(builder.response, context)


def _start_background(
    state: ResponsesState, builder: ResponseBuilder, stream: JobStream, context: list[Item]
) -> HTTPResponse:
    response = builder.response
    state.store.put(response, context)
    answer = _json(response)  # as it is now: in progress

    async def run() -> None:
        try:
            await _whole(builder, stream)
        except APIError as exc:
            builder.fail(exc)
        except asyncio.CancelledError:
            builder.cancelled()
            state.store.update(builder.response)
            raise
        finally:
            state.background.pop(response.id, None)
        state.store.update(builder.response)

    state.background[response.id] = asyncio.create_task(run())
    return answer


# --- stored responses ---------------------------------------------------------------------


def _stored(state: ResponsesState, response_id: str) -> Response:
    response = state.store.get(response_id)
    if response is None:
        raise APIError(
            404,
            f"No response with id {response_id!r} is stored here (responses made with "
            "'store': false are not kept, and stored ones expire).",
            param="response_id",
            code="not_found",
        )
    return response


async def retrieve_response(request: Request) -> HTTPResponse:
    if request.query_params.get("stream") in ("true", "1"):
        raise APIError(
            400, "streaming a stored response again is not supported by this server", param="stream"
        )
    return _json(_stored(_state(request), request.path_params["response_id"]))


async def delete_response(request: Request) -> HTTPResponse:
    state, response_id = _state(request), request.path_params["response_id"]
    await _cancel_task(state, response_id)
    if not state.store.delete(response_id):
        _stored(state, response_id)  # the 404
    return _json(DeletedResponse(response_id))


async def cancel_response(request: Request) -> HTTPResponse:
    state, response_id = _state(request), request.path_params["response_id"]
    response = _stored(state, response_id)
    if not response.background:
        raise APIError(
            400,
            "only responses created with 'background': true can be cancelled",
            param="response_id",
        )
    await _cancel_task(state, response_id)
    return _json(_stored(state, response_id))


async def _cancel_task(state: ResponsesState, response_id: str) -> None:
    task = state.background.get(response_id)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def list_input_items(request: Request) -> HTTPResponse:
    state, response_id = _state(request), request.path_params["response_id"]
    _stored(state, response_id)
    items = state.store.context(response_id) or []
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, "'order' must be 'asc' or 'desc'", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 100:
        raise APIError(400, "'limit' must be an integer from 1 to 100", param="limit")
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.id for item in items]
        if after not in ids:
            raise APIError(400, f"'after' names no item of this response: {after!r}", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    first, last = (page[0].id, page[-1].id) if page else (None, None)
    return _json(ItemList(page, first, last, len(items) > limit))


async def count_input_tokens(request: Request) -> HTTPResponse:
    body = await decode_json(request, InputTokensRequest)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    if body.conversation is not None:
        raise APIError(400, "conversations are not supported by this server", param="conversation")
    return await respond_while_connected(request, _count(request, body, worker))


async def _count(request: Request, body: InputTokensRequest, worker: WorkerClient) -> HTTPResponse:
    prompt = await build_prompt(
        request,
        worker,
        _state(request).store,
        input=body.input,
        instructions=body.instructions,
        tools=body.tools,
        tool_choice=body.tool_choice,
        text=body.text,
        previous_response_id=body.previous_response_id,
        truncation=body.truncation,
    )
    count, _ = await count_tokens(worker, prompt.messages, prompt.tools)
    return _json(InputTokens(count))
