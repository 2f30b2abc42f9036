"""The one config file format (TOML), decoded and validated by msgspec.

Both the gateway and the workers' supervisors read the same file, so it lives
beside the messages. Relative model paths are resolved against the config
file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Family = Literal["llm", "vlm", "embeddings", "whisper", "flux", "kokoro"]
# When a model's process runs: from the gateway's start, from the first request
# for it, or only when asked (POST /admin/models/{m}/load).
LoadPolicy = Literal["startup", "on_demand", "manual"]

DEFAULT_CONFIG = "configs/demo.toml"

# Seconds a model process may go without answering a heartbeat before it is
# killed and restarted: one engine step must fit, and a flux denoising step or
# VAE decode, or a whisper window, takes far longer than a batch of tokens.
FAMILY_HEARTBEAT_TIMEOUT: dict[str, float] = {
    "llm": 10.0,
    "vlm": 10.0,
    "embeddings": 10.0,
    "kokoro": 20.0,
    "whisper": 60.0,
    "flux": 60.0,
}
# Seconds a load (and a request waiting for it) may take.
FAMILY_LOAD_TIMEOUT: dict[str, float] = {
    "llm": 120.0,
    "vlm": 120.0,
    "embeddings": 60.0,
    "kokoro": 60.0,
    "whisper": 120.0,
    "flux": 300.0,
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B|%)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class ConfigError(ValueError):
    """The config file is missing or invalid; the message says where."""


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    # Supervisors report their state here and take commands (load, unload,
    # restart, kill) from the gateway on the same link.
    control_endpoint: str = "tcp://127.0.0.1:5700"
    # Empty: no authentication. Otherwise `Authorization: Bearer <key>` must match one.
    api_keys: list[str] = []
    cors_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    request_timeout: float = 600.0
    max_body_bytes: int = 32 * 1024 * 1024
    heartbeat_interval: float = 0.5
    # A worker silent this long is hung (its loop proves liveness): killed and
    # restarted. None: each model's own, else its family's default.
    heartbeat_timeout: float | None = None
    # Chat image parts (vision models): local paths (file://... or absolute)
    # are read only when allowed; http(s) URLs are fetched by the gateway
    # within these limits (and data: URLs are capped the same).
    allow_local_images: bool = False
    image_max_bytes: int = 10 * 1024 * 1024
    image_fetch_timeout: float = 10.0
    # Audio uploads (/v1/audio/transcriptions, /translations): OpenAI's 25 MB.
    max_upload_bytes: int = 25 * 1024 * 1024
    # Generated images answered as URLs (response_format "url") are kept in
    # memory: at most this many, each for this long (then the URL is a 404).
    image_store_capacity: int = 64
    image_url_ttl: float = 3600.0
    # "text": key=value lines (honcho names each process); "json": one JSON
    # object a line, each with request_id, house_id and model. Workers and
    # supervisors read the same setting.
    log_format: Literal["text", "json"] = "text"
    # Requests to /v1/* per API key (per client address when there are no
    # keys): "100/minute", "10/second", "5000/hour", "20/10s". Over it: 429
    # with Retry-After. None: no limit.
    rate_limit: str | None = None
    # A host other than loopback serves the network: the gateway refuses to
    # start there without api_keys unless this is set.
    allow_insecure_public: bool = False
    # Stored responses (/v1/responses with "store": true, the default): a
    # SQLite file (a relative path is from the gateway's working directory,
    # where `make run` keeps run/), or ":memory:" to keep them for the
    # process only; at most this many, each for this long (OpenAI's 30 days).
    responses_store: str = "run/responses.sqlite3"
    responses_max_stored: int = 10_000
    responses_max_age: float = 30 * 24 * 3600.0
    # Keys for /admin/* (accepted on /v1/* too). Empty: /admin takes the api_keys.
    admin_keys: list[str] = []
    # Memory the loaded models may reserve together: bytes, "24 GB", "20 GiB"
    # or "75%" of the machine's. None: 90% of MLX's recommended working set on
    # Apple silicon, 80% of RAM elsewhere.
    memory_budget: int | str | None = None
    # A load that does not fit: "none" refuses it (409), "lru" first unloads
    # idle unpinned models, least recently used first.
    eviction: Literal["none", "lru"] = "none"
    # SIGTERM / Ctrl-C: running requests get this long to finish.
    shutdown_timeout: float = 10.0


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    family: Family
    # A local model folder, or a Hugging Face repo id (downloaded by the worker
    # at startup if not cached; never at request time).
    path: str
    endpoint: str
    aliases: list[str] = []
    description: str = ""
    # True for the random-weight offline demo models: shown in /v1/models.
    demo: bool = False
    # In-flight requests the gateway admits for this model before answering 429.
    max_pending: int = 256
    # Family-specific engine options (validated by the engine at startup).
    options: dict[str, Any] = {}
    # On SIGTERM, running requests get this long to finish before the process exits.
    drain_timeout: float = 30.0
    # Linux: OpenBLAS (and OpenMP) threads of the model process, set by its
    # supervisor; several model processes share the cores.
    blas_threads: Annotated[int, msgspec.Meta(ge=1)] = 1
    # A longer prompt (chat, completions, messages; each embeddings input) is
    # a 400 with the counts; None: only the context length limits it.
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    load: LoadPolicy = "startup"
    # Idle seconds (nothing in flight) before it is unloaded; None: never.
    ttl: float | None = None
    # Never evicted to make room for another model (an explicit unload still works).
    pinned: bool = False
    # How long a load, and a request waiting for one, may take; None: the family's default.
    load_timeout: float | None = None
    # Silent this long: killed and restarted; None: the gateway's, else the family's default.
    heartbeat_timeout: float | None = None
    # Memory to reserve for it before it has served (bytes or "3 GB"); None:
    # estimated from its weights and cache options, then measured.
    memory_estimate: int | str | None = None

    def heartbeat_limit(self) -> float:
        """Seconds without a heartbeat after which the process counts as hung."""
        if self.heartbeat_timeout is not None:
            return self.heartbeat_timeout
        return FAMILY_HEARTBEAT_TIMEOUT[self.family]

    def load_limit(self) -> float:
        """Seconds a load may take."""
        if self.load_timeout is not None:
            return self.load_timeout
        return FAMILY_LOAD_TIMEOUT[self.family]


class Config(msgspec.Struct, forbid_unknown_fields=True):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    models: list[ModelConfig] = []
    # The file this was read from (set by load_config, not by the file).
    source: str = ""

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise ConfigError(f"model {name!r} is not in {self.source} (known: {known})")


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The config to use: explicit path, else $MLX_GATEWAY_CONFIG, else the demo config."""
    return Path(path or os.environ.get("MLX_GATEWAY_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config; $MLX_GATEWAY_PORT overrides the gateway port."""
    file = config_path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror}") from exc
    try:
        config = msgspec.toml.decode(raw, type=Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    config.source = str(file)
    port = os.environ.get("MLX_GATEWAY_PORT")
    if port:
        config.gateway.port = int(port)
    for model in config.models:
        local = file.parent / model.path
        if not Path(model.path).is_absolute() and (model.path.startswith(".") or local.exists()):
            model.path = str(local.resolve())
        if model.heartbeat_timeout is None:
            model.heartbeat_timeout = config.gateway.heartbeat_timeout
    _check_unique(config)
    if config.gateway.rate_limit is not None:
        try:
            parse_rate_limit(config.gateway.rate_limit)
        except ConfigError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    _check_sizes(config)
    return config


_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)\s*$", re.IGNORECASE)
_PERIODS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}


def parse_rate_limit(text: str) -> tuple[int, float]:
    """``"100/minute"`` (or ``"10/second"``, ``"5000/hour"``, ``"20/10s"``):
    (requests, seconds they are allowed in)."""
    match = _RATE.match(text)
    unit = match[3].lower() if match else ""
    if match is None or unit not in _PERIODS or int(match[1]) < 1 or int(match[2] or 1) == 0:
        raise ConfigError(
            f'rate_limit {text!r}: expected "N/second", "N/minute", "N/hour", "N/day" '
            'or "N/<count><s|m|h|d>" with N >= 1, e.g. "100/minute" or "20/10s"'
        )
    return int(match[1]), int(match[2] or 1) * float(_PERIODS[unit])


def parse_size(value: int | str) -> int | float:
    """Bytes (an int, or text with a unit: "24 GB", "20 GiB", "512 MiB"), or,
    for a percentage ("75%"), the fraction (0.75) of whatever it is a share of."""
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"a size must not be negative: {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ConfigError(f'not a size: {value!r} (bytes, or e.g. "24 GB", "20 GiB", "75%")')
    number, unit = float(match[1]), (match[2] or "B").lower()
    if unit == "%":
        if not 0 < number <= 100:
            raise ConfigError(f"a percentage must be in (0, 100]: {value!r}")
        return number / 100
    return int(number * _UNITS[unit])


def model_from_command_line(
    description: str | None, argv: list[str] | None = None
) -> tuple[Config, ModelConfig]:
    """``--model NAME [--config FILE]``: the command line of a model's processes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="model name from the config")
    parser.add_argument("--config", default=None, help="config file (default $MLX_GATEWAY_CONFIG)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    return config, config.model(args.model)


def _check_sizes(config: Config) -> None:
    sizes = [("memory_budget", config.gateway.memory_budget)]
    sizes += [(f"{m.name}: memory_estimate", m.memory_estimate) for m in config.models]
    for where, size in sizes:
        if size is None:
            continue
        try:
            value = parse_size(size)
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: {where}: {exc}") from None
        if where != "memory_budget" and isinstance(value, float):
            raise ConfigError(f"{config.source}: {where}: a percentage is only for memory_budget")


def _check_unique(config: Config) -> None:
    seen: dict[str, str] = {}
    for model in config.models:
        for key in (model.name, *model.aliases):
            if key in seen:
                raise ConfigError(
                    f"{config.source}: name {key!r} used by both {seen[key]!r} and {model.name!r}"
                )
            seen[key] = model.name
    endpoints = [m.endpoint for m in config.models] + [config.gateway.control_endpoint]
    if len(set(endpoints)) != len(endpoints):
        raise ConfigError(f"{config.source}: two models (or the control socket) share an endpoint")
