"""Speech to text on mlx-whisper: transcriptions and translations.

mlx-whisper's own API end to end: ``load_models.load_model`` (a local folder
or an mlx-community hub id, via :func:`workers.weights.local_or_hub`) and
``transcribe`` (log-mel, language detection, one decode per 30-s window with
the timestamp rules, temperature fallback, word alignment). Uploaded bytes
are decoded by ffmpeg (:mod:`workers.engines.whisper_audio`) on a small
thread of their own as soon as a job arrives, so an unreadable file is a 400
at once, not after the jobs ahead of it.

``transcribe`` is one long call with no step API: a long file can take
minutes, far more than a ``step`` may. So the model lives in one
*transcriber* thread that loads it and runs every transcription (all MLX
work in one thread, as mlx-lm's server does: MLX streams are per thread on
Metal), while ``step`` only waits up to its budget for that thread's next
result. The worker loop therefore keeps answering pings and cancels during a
long transcription. A cancel takes effect at the next 30-s window: the
model's ``decode`` (called once per window, and per fallback temperature)
is wrapped to stop a cancelled job there. One job runs at a time; others
wait in order (the gateway bounds them with ``max_pending``).
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np
import structlog

from protocol.config import ModelConfig
from protocol.messages import (
    Events,
    Finished,
    Job,
    JobFailed,
    Segment,
    Transcript,
    TranscriptionJob,
    Usage,
    Word,
    WorkerStats,
)
from workers.engine import JobError, engine_options, unprocessable
from workers.engines.whisper_audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    NoAudioDecoder,
    decode_audio,
)
from workers.weights import local_or_hub

log = structlog.get_logger()

# Whisper's fallback schedule (openai-whisper's and mlx-whisper's default):
# OpenAI's temperature 0 means "raise it when a window's output looks wrong".
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class WhisperOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of a ``whisper`` model."""

    # The language when a request names none (ISO-639-1 code or English
    # name); None detects it from the first 30 s.
    language: str | None = None
    # Most tokens decoded per 30-s window; None: half the text context (224).
    sample_len: int | None = None
    # Request temperature 0: retry a window at 0.2, 0.4... when its output is
    # too repetitive or unlikely (Whisper's default, and OpenAI's behaviour).
    temperature_fallback: bool = True
    condition_on_previous_text: bool = True
    no_speech_threshold: float | None = 0.6
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    # With word timestamps: skip silences longer than this (seconds) around
    # likely hallucinations.
    hallucination_silence_threshold: float | None = None
    # "auto": float16 on a GPU (Metal); float32 on the CPU, where float16
    # matmuls have no BLAS and are several times slower.
    dtype: Literal["auto", "float16", "float32"] = "auto"


class _Cancelled(Exception):
    """Raised inside ``transcribe`` at a window boundary of a cancelled job."""


@dataclass
class _Job:
    job: TranscriptionJob
    language: str | None
    audio: Future[np.ndarray]
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return self.job.id


class WhisperEngine:
    family = "whisper"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, WhisperOptions)
        self._pending: deque[_Job] = deque()  # audio decoding or decoded, in order
        self._running: _Job | None = None  # in the transcriber thread
        self._inbox: queue.Queue[_Job | None] = queue.Queue()
        self._outbox: queue.Queue[tuple[_Job, Transcript | BaseException]] = queue.Queue()
        self._ffmpeg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ffmpeg")
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._stats_tokens = 0
        self._finished = 0

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        """Start the transcriber thread; it loads the model, and this waits for it."""
        from mlx_whisper.tokenizer import LANGUAGES

        self._languages = LANGUAGES
        self.default_language = self._language(self.options.language, "options.language")
        threading.Thread(target=self._serve, name="transcriber", daemon=True).start()
        self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error

    # --- jobs ---------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if not isinstance(job, TranscriptionJob):
            raise JobError(
                f"model {self.config.name!r} is a speech-to-text model: "
                "use /v1/audio/transcriptions or /v1/audio/translations",
                param="model",
            )
        language = self._language(job.language, "language") or self.default_language
        if job.task == "translate" and not self.model.is_multilingual:
            raise JobError(
                f"model {self.config.name!r} is English-only and cannot translate", param="model"
            )
        if not 0.0 <= job.temperature <= 1.0:
            raise JobError("'temperature' must be between 0 and 1", param="temperature")
        audio = self._ffmpeg.submit(decode_audio, job.audio, job.filename)
        self._pending.append(_Job(job, language, audio))

    def _language(self, name: str | None, param: str) -> str | None:
        """An ISO-639-1 code from a code or an English name ("en", "English")."""
        if not name:
            return None
        from mlx_whisper.tokenizer import TO_LANGUAGE_CODE

        key = name.strip().lower()
        code = key if key in self._languages else TO_LANGUAGE_CODE.get(key)
        if code is None:
            raise JobError(
                f"unknown language {name!r}: give an ISO-639-1 code such as 'en' or 'fr'",
                param=param,
            )
        return code

    def cancel(self, job_id: str) -> bool:
        if self._running is not None and self._running.id == job_id:
            self._running.cancelled.set()  # stops at the next window; result dropped
            return True
        for job in self._pending:
            if job.id == job_id:
                job.audio.cancel()
                self._pending.remove(job)
                return True
        return False

    def has_work(self) -> bool:
        return self._running is not None or bool(self._pending)

    def stats(self) -> WorkerStats:
        return WorkerStats(
            active=int(self._running is not None),
            queued=len(self._pending),
            generation_tokens=self._stats_tokens,
            requests_finished=self._finished,
        )

    # --- the worker loop's side ---------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Report what finished; start the next job; wait at most ``budget_s``."""
        events = Events(deltas=[], finished=[], failed=[], outputs=[])
        self._fail_undecodable(events)
        if self._running is None and self._pending and self._pending[0].audio.done():
            self._running = self._pending.popleft()
            self._inbox.put(self._running)
        if self._running is not None:
            try:
                job, result = self._outbox.get(timeout=budget_s)
            except queue.Empty:
                return events
            self._running = None
            self._report(job, result, events)
        elif self._pending:  # the next upload is still in ffmpeg
            wait([self._pending[0].audio], timeout=budget_s)
        return events

    def _fail_undecodable(self, events: Events) -> None:
        for job in [j for j in self._pending if j.audio.done()]:
            error = job.audio.exception()
            if error is None:
                continue
            self._pending.remove(job)
            name = self.config.name
            if isinstance(error, AudioDecodeError):
                events.failed.append(JobFailed(job.id, 400, "invalid_audio", str(error), "file"))
            elif isinstance(error, NoAudioDecoder):  # this host's fault, for every upload
                message = f"model {name!r} cannot decode audio: {error}"
                events.failed.append(JobFailed(job.id, 503, "audio_decoder_missing", message))
            else:
                events.failed.append(unprocessable(job.id, name, error))

    def _report(self, job: _Job, result: Transcript | BaseException, events: Events) -> None:
        if job.cancelled.is_set():
            return  # the runtime forgot the job when it was cancelled
        if isinstance(result, BaseException):
            # This upload's own transcription (Whisper keeps no state between
            # jobs, so the next one starts clean): it fails alone.
            log.error("transcription failed", job=job.id, error=repr(result))
            events.failed.append(unprocessable(job.id, self.config.name, result))
            return
        tokens = sum(len(s.tokens) for s in result.segments)
        self._stats_tokens += tokens
        self._finished += 1
        events.outputs.append(result)
        events.finished.append(Finished(job.id, "stop", Usage(0, tokens)))

    # --- the transcriber thread ---------------------------------------------

    def _serve(self) -> None:
        try:
            self._load_model()
        except BaseException as exc:  # noqa: BLE001 - reported by load()
            self._load_error = exc
            return
        finally:
            self._loaded.set()
        while (job := self._inbox.get()) is not None:
            result: Transcript | BaseException
            try:
                result = self._transcribe(job)
            except BaseException as exc:  # noqa: BLE001 - a failed job must not kill the thread
                result = exc
            self._outbox.put((job, result))

    def _load_model(self) -> None:
        import mlx.core as mx
        from mlx_whisper.load_models import load_model

        path = local_or_hub(self.config)
        dtype = self.options.dtype
        if dtype == "auto":
            dtype = "float16" if mx.metal.is_available() else "float32"
        self.fp16 = dtype == "float16"
        model = load_model(path, dtype=mx.float16 if self.fp16 else mx.float32)
        # load_model keeps the checkpoint's dtype; decoding wants one throughout.
        model.set_dtype(mx.float16 if self.fp16 else mx.float32)
        mx.eval(model.parameters())
        window_decode = model.decode

        def decode(mel: Any, options: Any) -> Any:
            """One 30-s window (or one fallback retry of it): the place to stop."""
            running = self._current
            if running is not None and running.cancelled.is_set():
                raise _Cancelled
            return window_decode(mel, options)

        model.decode = decode
        self.model = model
        self._path = path
        self._current: _Job | None = None
        _warm_up_word_alignment()

    def _transcribe(self, job: _Job) -> Transcript:
        import mlx.core as mx
        from mlx_whisper.transcribe import ModelHolder, transcribe

        options = self.options
        request = job.job
        samples = job.audio.result()
        temperature: float | tuple[float, ...] = request.temperature
        if request.temperature == 0.0 and options.temperature_fallback:
            temperature = FALLBACK_TEMPERATURES
        # transcribe() looks its model up by path in this holder: ours, loaded.
        ModelHolder.model, ModelHolder.model_path = self.model, self._path
        self._current = job
        try:
            result = transcribe(
                mx.array(samples),
                path_or_hf_repo=self._path,
                temperature=temperature,
                compression_ratio_threshold=options.compression_ratio_threshold,
                logprob_threshold=options.logprob_threshold,
                no_speech_threshold=options.no_speech_threshold,
                condition_on_previous_text=options.condition_on_previous_text,
                initial_prompt=request.prompt or None,
                word_timestamps=request.word_timestamps,
                hallucination_silence_threshold=options.hallucination_silence_threshold,
                language=job.language,
                task=request.task,
                sample_len=options.sample_len,
                fp16=self.fp16,
            )
        finally:
            self._current = None
        duration = samples.size / SAMPLE_RATE
        return Transcript(
            id=job.id,
            text=result["text"],
            language=self._languages.get(result["language"], result["language"]),
            duration=duration,
            segments=[_segment(s, duration) for s in result["segments"]],
        )


def _segment(raw: dict[str, Any], duration: float) -> Segment:
    """mlx-whisper's segment dict as a Segment. Times are clamped to the audio
    (a weak model can emit timestamps past its end, or an end before its
    start); statistics that are not finite (an empty window's NaN logprob)
    become 0, as JSON has no NaN."""
    start = _clamp(raw["start"], duration)
    end = max(start, _clamp(raw["end"], duration))
    words = []
    for w in raw.get("words", []):
        word_start = _clamp(w["start"], duration)
        word_end = max(word_start, _clamp(w["end"], duration))
        words.append(Word(w["word"], word_start, word_end, _finite(w.get("probability", 0.0))))
    return Segment(
        id=int(raw["id"]),
        start=start,
        end=end,
        text=raw["text"],
        tokens=[int(t) for t in raw["tokens"]],
        temperature=_finite(raw["temperature"]),
        avg_logprob=_finite(raw["avg_logprob"]),
        compression_ratio=_finite(raw["compression_ratio"]),
        no_speech_prob=_finite(raw["no_speech_prob"]),
        words=words,
        seek=int(raw["seek"]),
    )


def _clamp(seconds: Any, duration: float) -> float:
    return round(min(max(float(seconds), 0.0), duration), 3)


def _finite(value: Any) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _warm_up_word_alignment() -> None:
    """Compile mlx-whisper's numba kernels (word alignment's DTW) now, at load,
    rather than during the first request that asks for word timestamps
    (measured ~4 s here)."""
    from mlx_whisper.timing import dtw_cpu

    dtw_cpu(np.zeros((4, 4), dtype=np.float32))  # find_alignment's dtype
