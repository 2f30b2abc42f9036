"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on
the same LLM workers.

A request becomes the same :class:`~protocol.messages.ChatJob` a chat
completion does (:mod:`gateway.anthropic_requests`); only the shapes at the
edges differ (:mod:`gateway.anthropic_replies`), and errors are answered in
Anthropic's envelope (:mod:`gateway.anthropic_errors`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.anthropic_errors import anthropic_errors
from gateway.anthropic_replies import error_event, message_events, token_count, whole_message
from gateway.anthropic_requests import chat_job
from gateway.anthropic_schemas import CountTokensRequest, MessagesRequest
from gateway.body import decode_json
from gateway.client_disconnect import respond_while_connected
from gateway.dispatch import submit_job
from gateway.registry import TEXT_FAMILIES
from gateway.sse import sse_response


@anthropic_errors
async def messages(request: Request) -> Response:
    body = await decode_json(request, MessagesRequest)
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    stream = await submit_job(request, worker, chat_job(worker.new_job_id(), body))
    model = worker.model.name
    if body.stream:
        return sse_response(message_events(stream, model), error_event)
    return await respond_while_connected(request, whole_message(stream, model))


@anthropic_errors
async def count_tokens(request: Request) -> Response:
    """The prompt's tokens as the model's chat template and tokenizer make them
    (tools included), counted by its worker."""
    count = await decode_json(request, CountTokensRequest)
    body = MessagesRequest(
        count.model,
        1,
        count.messages,
        count.system,
        tools=count.tools,
        tool_choice=count.tool_choice,
        thinking=count.thinking,
    )
    worker = request.app.state.registry.resolve(body.model, TEXT_FAMILIES)
    job = chat_job(worker.new_job_id(), body, count_only=True)
    stream = await submit_job(request, worker, job, timed=False)
    return await respond_while_connected(request, token_count(stream))
