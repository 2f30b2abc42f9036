"""``mlx-gateway``: operate a running gateway from a shell (its admin API).

    mlx-gateway models                 every model: state, pid, memory...
    mlx-gateway show NAME              one model, as JSON
    mlx-gateway load NAME [--no-wait] [--timeout S] [--evict | --no-evict]
    mlx-gateway unload NAME [--drain-timeout S] [--force] [--no-wait]
    mlx-gateway restart NAME [--now]
    mlx-gateway drain NAME | resume NAME
    mlx-gateway set NAME [--pinned yes|no] [--ttl SECONDS|never] [--max-pending N]
    mlx-gateway memory                 the budget, reserved and free
    mlx-gateway reload                 re-read the config file
    mlx-gateway serve [--config FILE]  run the gateway itself (python -m gateway)

The gateway is ``--url`` (default ``$MLX_GATEWAY_URL``, else
``http://127.0.0.1:$MLX_GATEWAY_PORT``, port 8000), the key ``--key`` (default
``$MLX_GATEWAY_ADMIN_KEY``, else ``$MLX_GATEWAY_API_KEY``). Exit status 1 on an
error answer, whose message goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

GB = 1e9


def _parser() -> argparse.ArgumentParser:
    port = os.environ.get("MLX_GATEWAY_PORT", "8000")
    parser = argparse.ArgumentParser(
        prog="mlx-gateway", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--url", default=os.environ.get("MLX_GATEWAY_URL", f"http://127.0.0.1:{port}")
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("MLX_GATEWAY_ADMIN_KEY") or os.environ.get("MLX_GATEWAY_API_KEY"),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="every model")
    models.add_argument("--json", action="store_true", help="the admin API's JSON")
    commands.add_parser("show", help="one model").add_argument("name")
    load = commands.add_parser("load", help="load a model")
    load.add_argument("name")
    load.add_argument("--no-wait", action="store_true", help="answer at once, while it loads")
    load.add_argument(
        "--timeout", type=float, default=None, help="seconds (default its load_timeout)"
    )
    load.add_argument("--evict", action=argparse.BooleanOptionalAction, default=None)
    unload = commands.add_parser("unload", help="unload a model")
    unload.add_argument("name")
    unload.add_argument("--drain-timeout", type=float, default=None)
    unload.add_argument("--force", action="store_true", help="running requests end now (503)")
    unload.add_argument("--no-wait", action="store_true")
    restart = commands.add_parser("restart", help="a fresh process for a model")
    restart.add_argument("name")
    restart.add_argument("--now", action="store_true", help="do not drain first")
    commands.add_parser("drain", help="refuse new requests, stay loaded").add_argument("name")
    commands.add_parser("resume", help="take requests again").add_argument("name")
    patch = commands.add_parser("set", help="change pinned, ttl or max_pending")
    patch.add_argument("name")
    patch.add_argument("--pinned", choices=("yes", "no"))
    patch.add_argument("--ttl", help="idle seconds before unloading, or 'never'")
    patch.add_argument("--max-pending", type=int)
    commands.add_parser("memory", help="the memory budget")
    commands.add_parser("reload", help="re-read the config file")
    commands.add_parser("serve", help="run the gateway (python -m gateway)", add_help=False)
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The admin call for a command: method, path, JSON body."""
    model = f"/admin/models/{getattr(args, 'name', '')}"
    match args.command:
        case "models":
            return "GET", "/admin/models", None
        case "show":
            return "GET", model, None
        case "load":
            body = {"wait": not args.no_wait, "timeout_s": args.timeout, "evict": args.evict}
            return "POST", f"{model}/load", body
        case "unload":
            body = {"drain_timeout_s": args.drain_timeout, "force": args.force}
            return "POST", f"{model}/unload", body | {"wait": not args.no_wait}
        case "restart":
            return "POST", f"{model}/restart", {"graceful": not args.now}
        case "drain" | "resume":
            return "POST", f"{model}/{args.command}", None
        case "set":
            patch: dict[str, Any] = {}
            if args.pinned is not None:
                patch["pinned"] = args.pinned == "yes"
            if args.ttl is not None:
                patch["ttl"] = None if args.ttl == "never" else float(args.ttl)
            if args.max_pending is not None:
                patch["max_pending"] = args.max_pending
            return "PATCH", model, patch
        case "memory":
            return "GET", "/admin/memory", None
        case _:
            return "POST", "/admin/reload", None


def table(models: list[dict[str, Any]]) -> str:
    rows = [("MODEL", "FAMILY", "STATE", "PID", "UP", "RESTARTS", "IN FLIGHT", "MEMORY", "ERROR")]
    for m in models:
        memory = m["memory"]["reserved"] or m["memory"]["estimate"]
        uptime = f"{m['uptime_s']:.0f}s" if m["uptime_s"] is not None else "-"
        rows.append(
            (
                m["name"],
                m["family"],
                m["state"],
                str(m["pid"] or "-"),
                uptime,
                str(m["restarts"]),
                str(m["in_flight"]),
                f"{memory / GB:.2f} GB",
                (m["last_error"] or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "serve" in argv[:1]:
        from gateway.__main__ import main as serve

        serve(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    method, path, body = _request(args)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        reply = httpx.request(
            method,
            args.url.rstrip("/") + path,
            json=body,
            headers=headers,
            timeout=httpx.Timeout(10.0, read=None),
        )
    except httpx.HTTPError as exc:
        print(f"mlx-gateway: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    data = reply.json() if reply.content else {}
    if reply.status_code >= 400:
        message = (
            data.get("error", {}).get("message", reply.text)
            if isinstance(data, dict)
            else reply.text
        )
        print(f"mlx-gateway: {reply.status_code}: {message}", file=sys.stderr)
        return 1
    if args.command == "models" and not args.json:
        print(table(data["data"]))
    else:
        print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
