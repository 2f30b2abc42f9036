"""Messages exchanged between the gateway and a worker over ZeroMQ.

Every message is a tagged ``msgspec.Struct``; a socket carries the union of
the messages one direction may send. Schema evolution follows msgspec's rules:
new fields only with defaults, appended at the end, never a type change.
Anything else bumps ``framing.PROTOCOL_VERSION``.

Gateway -> worker: jobs (:class:`ChatJob`, :class:`CompletionJob`) and
control (:class:`Cancel`, :class:`Ping`). Worker -> gateway: one
:class:`Events` per engine step, carrying the new text of *every* running job
(a message per token per job does not scale to 32 streams), and
:class:`Pong`, the heartbeat answer that also reports state and stats.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

WorkerState = Literal["loading", "ready", "failed", "draining"]
FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]
# Chat jobs with tools: "auto" parses the calls the model writes, "none"
# parses none, "forced" means the output *is* one call: JSON {"name", "arguments"}
# constrained by SamplingParams.json_schema.
ToolMode = Literal["auto", "none", "forced"]


class ToolCall(msgspec.Struct):
    """A function call the model made; ``arguments`` is JSON text (an object)."""

    id: str
    name: str
    arguments: str


class ChatMessage(msgspec.Struct, omit_defaults=True):
    """One message of a chat transcript, already validated by the gateway."""

    role: str
    content: str | None = None
    name: str | None = None
    # An assistant turn's calls, and a tool result's call id (role "tool").
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # Vision models: the message's images (PNG, JPEG... file bytes, fetched
    # and decoded by the gateway), shown to the model before its text.
    images: list[bytes] = []


class SamplingParams(msgspec.Struct, omit_defaults=True):
    """How to sample; ``max_tokens=None`` lets the worker fill the context."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = []
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = {}
    # Report each generated token's logprob, and the `top_logprobs` likeliest.
    logprobs: bool = False
    top_logprobs: int = 0
    # Completions: the prompt's text comes first in the output.
    echo: bool = False
    # Structured output (response_format): the JSON schema, as JSON text, the
    # output must validate against ('{"type": "object"}' for json_object). The
    # worker compiles it into a grammar and masks tokens while decoding.
    json_schema: str | None = None


# --- gateway -> worker -------------------------------------------------------


class ChatJob(msgspec.Struct, tag="chat"):
    """Generate the assistant turn for ``messages`` with the model's chat template."""

    id: str
    messages: list[ChatMessage]
    params: SamplingParams
    # OpenAI tool definitions ({"type": "function", "function": {...}}), given
    # to the chat template; how calls are read from the output: ``tool_mode``.
    tools: list[dict[str, Any]] | None = None
    tool_mode: ToolMode = "auto"


class CompletionJob(msgspec.Struct, tag="completion"):
    """Continue raw ``prompt`` text (or token ids) without any template."""

    id: str
    prompt: str | list[int]
    params: SamplingParams


class Cancel(msgspec.Struct, tag="cancel"):
    """Stop a job and free its slot (client went away, timeout)."""

    id: str


class Ping(msgspec.Struct, tag="ping"):
    """Heartbeat request; answered by :class:`Pong` from the generation loop."""

    seq: int


Job = ChatJob | CompletionJob
ToWorker = ChatJob | CompletionJob | Cancel | Ping


# --- worker -> gateway -------------------------------------------------------


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens whose KV cache was reused from an earlier request.
    cached_tokens: int = 0


class TopLogprob(msgspec.Struct, array_like=True):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(msgspec.Struct, array_like=True):
    """One generated token: its text, logprob, UTF-8 bytes and the likeliest alternatives."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[TopLogprob] = []


class Delta(msgspec.Struct, array_like=True):
    """New text of one job since the previous step (hot path: array-encoded)."""

    id: str
    text: str
    tokens: int
    logprobs: list[TokenLogprob] | None = None
    # Text inside the model's reasoning markers (<think>...</think>), apart.
    reasoning: str = ""
    # Tool calls made in this step (their text is not in ``text``). A call
    # whose id came before continues it: ``arguments`` is more of its text.
    tool_calls: list[ToolCall] = []


class Finished(msgspec.Struct):
    """A job ended normally; ``text`` is any tail not sent in a delta yet."""

    id: str
    finish_reason: FinishReason
    usage: Usage
    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    # The stop string that ended the job (finish_reason "stop"); None for EOS.
    stop_sequence: str | None = None
    reasoning: str = ""
    tool_calls: list[ToolCall] = []


class JobFailed(msgspec.Struct):
    """A job ended with an error the client should see (HTTP-like ``status``)."""

    id: str
    status: int
    code: str
    message: str
    param: str | None = None


class Events(msgspec.Struct, tag="events", omit_defaults=True):
    """Everything that happened to every job during one engine step."""

    deltas: list[Delta] = []
    finished: list[Finished] = []
    failed: list[JobFailed] = []


class WorkerStats(msgspec.Struct):
    active: int = 0
    queued: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_finished: int = 0


class Pong(msgspec.Struct, tag="pong"):
    """Heartbeat answer. ``instance`` changes when the process is replaced;
    ``steps`` counts generation-loop iterations so a live process with a dead
    loop is visible."""

    seq: int
    instance: str
    pid: int
    model: str
    family: str
    state: WorkerState
    steps: int
    stats: WorkerStats
    error: str | None = None


class Goodbye(msgspec.Struct, tag="goodbye"):
    """The worker's last message before a clean exit: everything it owed has
    been sent, so what is still in flight was lost, with no need to wait."""

    instance: str


FromWorker = Events | Pong | Goodbye


# --- supervisor -> gateway ---------------------------------------------------

SupervisorState = Literal["starting", "running", "restarting", "failed", "stopped"]


class SupervisorStatus(msgspec.Struct, tag="supervisor"):
    """What a worker's supervisor knows: whether its process runs, restarts."""

    model: str
    state: SupervisorState
    pid: int | None
    restarts: int
    message: str = ""
