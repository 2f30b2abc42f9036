"""Operating one model while the others keep serving: POST /admin/models/{model}/restart.

The same as ``kill -TERM <pid>`` on the model process, without a shell on the
host: the process drains (new requests 503 ``draining``, running ones finish,
up to the model's ``drain_timeout``) or, with ``{"graceful": false}``, fails its
running requests at once; then it exits and its supervisor starts a fresh one,
which re-reads the config (so a changed ``path`` or ``options`` replaces the
model). Needs an API key when keys are configured.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.body import read_limited
from gateway.errors import APIError


class RestartRequest(msgspec.Struct, forbid_unknown_fields=True):
    graceful: bool = True


async def restart_model(request: Request) -> JSONResponse:
    worker = request.app.state.registry.resolve(request.path_params["model"])
    body = await read_limited(request, 4096)
    try:
        options = msgspec.json.decode(body, type=RestartRequest) if body else RestartRequest()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise APIError(400, f"invalid request: {exc}") from exc
    pid = worker.restart(graceful=options.graceful)
    return JSONResponse(
        {
            "model": worker.model.name,
            "pid": pid,
            "graceful": options.graceful,
            "state": "draining" if options.graceful else "restarting",
        },
        status_code=202,
    )
