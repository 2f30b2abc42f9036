"""GET /v1/models and GET /v1/models/{model}: every configured model and its state."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.model_info import model_info
from gateway.openai_schemas import ModelCard, ModelList
from gateway.worker_client import WorkerClient

DEMO_NOTE = "random-weight demo model made offline; its output is gibberish"


def card(worker: WorkerClient, created: int) -> ModelCard:
    m = worker.model
    info = model_info(m)
    description = m.description
    if m.demo and DEMO_NOTE not in description:
        description = f"{description} ({DEMO_NOTE})" if description else DEMO_NOTE
    return ModelCard(
        id=m.name,
        created=created,
        owned_by="mlx-gateway",
        family=m.family,
        state=worker.state,
        aliases=list(m.aliases),
        description=description,
        demo=m.demo,
        path=info.path,
        quantization=info.quantization,
        context_length=info.context_length,
        capabilities=info.capabilities,
        max_prompt_tokens=m.max_prompt_tokens,
    )


async def list_models(request: Request) -> Response:
    registry, created = request.app.state.registry, request.app.state.started
    cards = [card(w, created) for w in registry.workers.values()]
    return Response(msgspec.json.encode(ModelList(cards)), media_type="application/json")


async def get_model(request: Request) -> Response:
    worker = request.app.state.registry.resolve(request.path_params["model"])
    body = card(worker, request.app.state.started)
    return Response(msgspec.json.encode(body), media_type="application/json")
