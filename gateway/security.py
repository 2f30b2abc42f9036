"""Who may reach the gateway: the address it binds and how API keys are checked.

The gateway binds loopback by default. Serving the network without any API
key would hand every model (and the admin API) to anyone who can reach the
port, so a non-loopback host without ``api_keys`` is refused at startup
unless ``allow_insecure_public`` says that is meant (a trusted network, or
a proxy in front that authenticates).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket

from starlette.datastructures import Headers

from protocol.config import GatewaySettings


class InsecureBindError(RuntimeError):
    """The gateway would serve the network with no API key."""


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (``127.0.0.1``,
    ``::1``, ``localhost``); ``0.0.0.0``, ``::`` and other hosts are not."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def check_bind(host: str, settings: GatewaySettings) -> None:
    """Raise :class:`InsecureBindError`, saying what to do, for a non-loopback
    ``host`` without API keys (unless ``allow_insecure_public``)."""
    if settings.api_keys or settings.allow_insecure_public or is_loopback(host):
        return
    raise InsecureBindError(
        f"refusing to serve on {host!r} without an API key: anyone who can reach "
        'this port could use every model. Set [gateway] api_keys = ["..."] (clients '
        "send 'Authorization: Bearer <key>'), bind a loopback host (127.0.0.1), or, "
        "if the network is trusted or a proxy in front authenticates, set "
        "[gateway] allow_insecure_public = true."
    )


def presented_key(headers: Headers) -> bytes:
    """The key a request presents: ``Authorization: Bearer <key>``, or (as
    Anthropic's clients send it) ``x-api-key: <key>``; empty if none."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        token = headers.get("x-api-key", "")
    return token.strip().encode()


def key_matches(token: bytes, keys: list[bytes]) -> bool:
    """Whether ``token`` is one of ``keys``, in time that depends on neither
    which key matched nor how long any is: every key is compared, each as the
    SHA-256 of both sides (equal lengths) with :func:`hmac.compare_digest`."""
    presented = hashlib.sha256(token).digest()
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, hashlib.sha256(key).digest())
    return found
