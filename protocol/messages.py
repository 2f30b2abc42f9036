"""Messages exchanged between the gateway and a worker over ZeroMQ.

Every message is a tagged ``msgspec.Struct``; a socket carries the union of
the messages one direction may send. Schema evolution follows msgspec's rules:
new fields only with defaults, appended at the end, never a type change.
Anything else bumps ``framing.PROTOCOL_VERSION``.

Gateway -> worker: jobs (:class:`ChatJob`, :class:`CompletionJob`, and one
per other model family: speech, transcription, embedding, image) and
control (:class:`Cancel`, :class:`Ping`). Supervisor <-> gateway: its
:class:`SupervisorStatus` one way, lifecycle commands (:class:`LoadModel`,
:class:`UnloadModel`, :class:`RestartModel`, :class:`KillModel`) the other. Worker -> gateway: one
:class:`Events` per engine step, carrying the new text of *every* running job
(a message per token per job does not scale to 32 streams) and the
results of non-text jobs (``Events.outputs``), and
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
    # An assistant turn's reasoning (Responses API reasoning items), given to
    # the chat template as ``reasoning_content``; templates that know it
    # render it (most drop it from earlier turns).
    reasoning: str = ""


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
    # Only count the prompt's tokens (Anthropic's count_tokens): the answer is
    # a Finished whose usage has the count, with nothing generated.
    count_only: bool = False
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


class CompletionJob(msgspec.Struct, tag="completion"):
    """Continue raw ``prompt`` text (or token ids) without any template."""

    id: str
    prompt: str | list[int]
    params: SamplingParams
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


class Cancel(msgspec.Struct, tag="cancel"):
    """Stop a job and free its slot (client went away, timeout)."""

    id: str


class Restart(msgspec.Struct, tag="restart"):
    """Ops asked for a fresh process: drain (running jobs finish, up to the
    model's ``drain_timeout``) or, not ``graceful``, fail them now; then exit,
    and the supervisor starts a new process (which re-reads the config).

    ``instance`` names the process meant (its Pong's ``instance``): a Restart
    that reaches a newer process, having waited in the socket's queue while
    the old one exited, is ignored rather than restarting that one too."""

    graceful: bool = True
    instance: str | None = None


class Ping(msgspec.Struct, tag="ping"):
    """Heartbeat request; answered by :class:`Pong` from the generation loop."""

    seq: int


# --- gateway -> worker: the other model families ------------------------------
# Their results come back as ``Events.outputs`` (below), then a ``Finished``
# (usage, finish_reason "stop") or a ``JobFailed``, like a text job.


class SpeechJob(msgspec.Struct, tag="speech", omit_defaults=True):
    """Text to speech (family "kokoro"). The worker synthesises sentence by
    sentence and sends an :class:`AudioChunk` as each is ready."""

    id: str
    input: str
    # A voice name or a weighted mix ("af_bella(2)+af_sky(1)").
    voice: str
    speed: float = 1.0
    # Also report phoneme and word timings (for visemes / lip sync).
    timings: bool = False
    # Only list the worker's voices (answered with an AudioChunk holding
    # ``voices`` and no audio); ``input`` and ``voice`` are ignored.
    list_voices: bool = False
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


class TranscriptionJob(msgspec.Struct, tag="transcription", omit_defaults=True):
    """Speech to text (family "whisper"): ``audio`` is the uploaded file's bytes,
    in any format ffmpeg reads."""

    id: str
    audio: bytes
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    # The upload's file name, to name it in errors ("could not decode 'x.bin'").
    filename: str = ""
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


class EmbeddingJob(msgspec.Struct, tag="embedding", omit_defaults=True):
    """Embed each input (a text or a list of token ids), batched in forward passes."""

    id: str
    inputs: list[str | list[int]]
    # Matryoshka truncation (then re-normalised); None keeps the model's width.
    dimensions: int | None = None
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


class ImageJob(msgspec.Struct, tag="image", omit_defaults=True):
    """Generate ``n`` images (family "flux"); with ``image``, edit it instead
    (img2img / Kontext-style, ``mask`` limiting where)."""

    id: str
    prompt: str
    width: int
    height: int
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    image: bytes | None = None
    mask: bytes | None = None
    # img2img: how much of the input image to keep re-noising (0..1).
    strength: float | None = None
    # Streaming: how many previews (Progress.preview_png) to send while denoising.
    partial_images: int = 0
    # The request's X-Request-ID and X-House-ID, for the worker's log lines.
    request_id: str = ""
    house_id: str = ""


Job = ChatJob | CompletionJob | SpeechJob | TranscriptionJob | EmbeddingJob | ImageJob
ToWorker = Job | Cancel | Restart | Ping


# --- worker -> gateway -------------------------------------------------------


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens whose KV cache was reused from an earlier request.
    cached_tokens: int = 0
    # Completion tokens generated inside the model's reasoning markers.
    reasoning_tokens: int = 0


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
    # The model's context length in tokens; set on the answer to a
    # ``count_only`` job, so the gateway can fit a prompt (truncation "auto").
    context_length: int = 0


class JobFailed(msgspec.Struct):
    """A job ended with an error the client should see (HTTP-like ``status``)."""

    id: str
    status: int
    code: str
    message: str
    param: str | None = None


# --- worker -> gateway: results of the other families ---------------------------


class Timed(msgspec.Struct, array_like=True):
    """A label (phoneme, word) and when it is spoken, in seconds from the
    start of the job's audio."""

    label: str
    start: float
    end: float


class AudioChunk(msgspec.Struct, tag="audio", omit_defaults=True):
    """Speech for one piece of the input (a sentence): mono 16-bit PCM,
    little-endian, starting ``start`` seconds into the job's audio."""

    id: str
    pcm: bytes
    sample_rate: int
    start: float
    phonemes: list[Timed] = []
    words: list[Timed] = []
    # The answer to a ``SpeechJob`` with ``list_voices``.
    voices: list[str] = []


class Word(msgspec.Struct, array_like=True):
    word: str
    start: float
    end: float
    probability: float = 0.0


class Segment(msgspec.Struct, omit_defaults=True):
    id: int
    start: float
    end: float
    text: str
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] = []
    # Where the 30-s window this segment came from starts, in 10-ms mel frames.
    seek: int = 0


class Transcript(msgspec.Struct, tag="transcript", omit_defaults=True):
    id: str
    text: str
    language: str
    duration: float
    segments: list[Segment] = []


class Embeddings(msgspec.Struct, tag="embeddings"):
    """One vector per input, in order: float32 little-endian bytes each."""

    id: str
    dimensions: int
    vectors: list[bytes]


class GeneratedImage(msgspec.Struct, tag="generated_image", omit_defaults=True):
    """One finished image (PNG bytes), ``index`` of the job's ``n``."""

    id: str
    index: int
    png: bytes
    seed: int


class Progress(msgspec.Struct, tag="progress", omit_defaults=True):
    """A long job's progress (denoising steps), with an optional preview."""

    id: str
    step: int
    total: int
    index: int = 0
    preview_png: bytes | None = None


Output = AudioChunk | Transcript | Embeddings | GeneratedImage | Progress


class Events(msgspec.Struct, tag="events", omit_defaults=True):
    """Everything that happened to every job during one engine step."""

    deltas: list[Delta] = []
    finished: list[Finished] = []
    failed: list[JobFailed] = []
    # Results of non-text jobs (audio, transcripts, vectors, images, progress).
    outputs: list[Output] = []


class WorkerStats(msgspec.Struct):
    active: int = 0
    queued: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_finished: int = 0
    # The process's memory (filled by the runtime, not the engine): resident
    # set, and MLX's allocator now and at its peak (0 where MLX does not say).
    rss_bytes: int = 0
    mlx_active_bytes: int = 0
    mlx_peak_bytes: int = 0


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


# --- supervisor <-> gateway (the control link) --------------------------------

# starting: not told yet whether to load; unloaded: no model process, none
# wanted; running: its process is up (its own state comes in its Pong);
# unloading: asked to exit, not to be restarted; restarting: waiting to start
# it again; failed: it keeps dying (retried after ``retry_in``); stopped: the
# supervisor is exiting.
SupervisorState = Literal[
    "starting", "running", "restarting", "failed", "stopped", "unloaded", "unloading"
]


class SupervisorStatus(msgspec.Struct, tag="supervisor"):
    """What a worker's supervisor knows: whether its process runs, restarts.
    Sent on every transition and every second."""

    model: str
    state: SupervisorState
    pid: int | None
    restarts: int
    message: str = ""
    # The restarts by why the process had stopped: "exited" (code 0: it
    # drained, as asked), "crashed" (another code), "killed" (by a signal).
    restarts_by_reason: dict[str, int] = {}
    # This supervisor process ("<pid>-<random>"): a new one is a new link.
    instance: str = ""
    host: str = ""
    # restarting / failed: seconds until the next start.
    retry_in: float | None = None
    # Seconds the current model process has been running.
    uptime: float | None = None


class LoadModel(msgspec.Struct, tag="load"):
    """Start the model process (now, even during a crash-loop backoff) and
    keep it running. ``memory_limit``: bytes the process may use (its MLX
    memory and wired limits on Apple silicon); 0 for no limit."""

    memory_limit: int = 0


class UnloadModel(msgspec.Struct, tag="unload"):
    """Stop the model process and do not start it again: drained (running jobs
    finish, up to ``drain_timeout``, default the model's) or, ``force``, at once."""

    drain_timeout: float | None = None
    force: bool = False


class RestartModel(msgspec.Struct, tag="restart_model"):
    """Replace the model process now: drained first, unless not ``graceful``."""

    graceful: bool = True


class KillModel(msgspec.Struct, tag="kill"):
    """SIGKILL model process ``pid`` (hung: silent past its heartbeat timeout)
    and start a new one; ignored if that process is gone already."""

    pid: int
    reason: str = ""


ToSupervisor = LoadModel | UnloadModel | RestartModel | KillModel
