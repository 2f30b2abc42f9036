"""What a Responses request asks the model: its conversation, as a chat transcript.

The conversation is the stored context of ``previous_response_id`` (its
input items and its output, so a chain of turns rebuilds the whole
conversation; its ``instructions`` are not carried over, as OpenAI does),
then the request's ``input``. With ``truncation: "auto"`` the oldest items
(all but system and developer messages, and at least the newest one kept)
are dropped until the prompt fits the model's context, counted by the
worker; with ``"disabled"`` (the default) a prompt too long is the worker's
400 ``context_length_exceeded`` with the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from gateway.chat_images import load_image
from gateway.errors import APIError
from gateway.responses_input import chat_messages, input_items
from gateway.responses_objects import (
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    MessageItem,
    Response,
)
from gateway.responses_schemas import TextConfig
from gateway.responses_store import ResponseStore
from gateway.responses_tools import ResponseTools, response_tools
from gateway.text_pieces import collect
from gateway.worker_client import WorkerClient
from protocol.messages import ChatJob, ChatMessage, SamplingParams


@dataclass
class Prompt:
    items: list[Item]  # the conversation the model is given, oldest first
    messages: list[ChatMessage]
    tools: ResponseTools
    previous: Response | None


async def build_prompt(
    request: Request,
    worker: WorkerClient,
    store: ResponseStore,
    *,
    input: str | list[Any] | None,
    instructions: str | None,
    tools: list[Any] | None,
    tool_choice: str | dict[str, Any] | None,
    text: TextConfig | None,
    previous_response_id: str | None,
    truncation: str | None,
    max_output_tokens: int | None = None,
) -> Prompt:
    setup = response_tools(tools, tool_choice, text)
    new = input_items(input, resolve=store.item)
    previous: Response | None = None
    earlier: list[Item] = []
    if previous_response_id is not None:
        previous, earlier = _previous(store, previous_response_id)
    items = [*earlier, *new]
    names = ["previous_response_id"] * len(earlier) + [f"input[{i}]" for i in range(len(new))]
    if not items:
        raise APIError(400, "'input' is required (or a 'previous_response_id')", param="input")
    vision = worker.model.family == "vlm"
    loaded: dict[str, bytes] = {}
    settings = request.app.state.config.gateway

    async def load(url: str, param: str) -> bytes:
        if url not in loaded:  # truncation may render the conversation several times
            loaded[url] = await load_image(url, param=param, settings=settings)
        return loaded[url]

    async def render(kept: list[int]) -> list[ChatMessage]:
        return await chat_messages(
            [items[i] for i in kept],
            instructions=instructions,
            vision=vision,
            load_image=load,
            params=[names[i] for i in kept],
        )

    everything = list(range(len(items)))
    messages = await render(everything)
    if truncation == "auto":
        kept = await _fit(worker, setup, items, everything, render, max_output_tokens)
        if len(kept) < len(items):
            messages = await render(kept)
            items = [items[i] for i in kept]
    return Prompt(items, messages, setup, previous)


def _previous(store: ResponseStore, response_id: str) -> tuple[Response, list[Item]]:
    previous = store.get(response_id)
    context = store.context(response_id) if previous is not None else None
    if previous is None or context is None:
        raise APIError(
            400,
            f"Previous response with id {response_id!r} not found (only responses created "
            "with 'store': true are kept, and not forever).",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    if previous.status in ("queued", "in_progress"):
        raise APIError(
            400,
            f"previous response {response_id!r} is still {previous.status}",
            param="previous_response_id",
        )
    return previous, [*context, *previous.output]


async def count_tokens(
    worker: WorkerClient, messages: list[ChatMessage], tools: ResponseTools
) -> tuple[int, int]:
    """(the prompt's tokens, the model's context length), counted by its worker."""
    setup = tools.setup
    job = ChatJob(
        worker.new_job_id(),
        messages,
        SamplingParams(max_tokens=1),
        setup.tools,
        setup.mode,
        count_only=True,
    )
    (whole,) = await collect([await worker.submit(job)])
    assert whole.finished is not None
    return whole.finished.usage.prompt_tokens, whole.finished.context_length


async def _fit(
    worker: WorkerClient,
    tools: ResponseTools,
    items: list[Item],
    everything: list[int],
    render: Any,
    max_output_tokens: int | None,
) -> list[int]:
    """The items kept so the prompt leaves room for the answer: the fewest
    oldest droppable items dropped (a binary search over counts)."""
    count, limit = await count_tokens(worker, await render(everything), tools)
    if not limit:
        return everything
    reserve = max_output_tokens or min(4096, limit // 4)
    if count + reserve <= limit:
        return everything
    fixed = [i for i in everything if _is_system(items[i])]
    droppable = [i for i in everything if not _is_system(items[i])]

    def kept(dropped: int) -> list[int]:
        rest = _without_orphans(items, droppable[dropped:])
        return sorted([*fixed, *rest])

    low, high, best = 1, len(droppable) - 1, None
    while low <= high:
        middle = (low + high) // 2
        tokens, _ = await count_tokens(worker, await render(kept(middle)), tools)
        if tokens + reserve <= limit:
            best, high = middle, middle - 1
        else:
            low = middle + 1
    if best is None:
        raise APIError(
            400,
            f"this model's maximum context length is {limit} tokens, and even the newest "
            f"input item with {reserve} tokens for the answer does not fit "
            f"(the whole prompt has {count} tokens)",
            code="context_length_exceeded",
            param="input",
        )
    return kept(best)


def _is_system(item: Item) -> bool:
    return isinstance(item, MessageItem) and item.role in ("system", "developer")


def _without_orphans(items: list[Item], kept: list[int]) -> list[int]:
    """``kept`` less the call outputs whose call was dropped."""
    calls = {item.call_id for i in kept if isinstance(item := items[i], FunctionCallItem)}
    return [
        i
        for i in kept
        if not (isinstance(item := items[i], FunctionCallOutputItem) and item.call_id not in calls)
    ]
