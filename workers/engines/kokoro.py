"""Text to speech with Kokoro on kokoro-mlx, one sentence per step.

kokoro-mlx's own pieces: ``KokoroConfig`` / ``KokoroModel.from_pretrained``
(weights), ``VoiceManager`` (voice packs, one style vector per input length)
and its voice-prefix -> language table; the forward pass is
:func:`workers.engines.kokoro_synth.synthesize`, which also returns the
duration predictor's frames per phoneme, the source of every timing.

A job's input is split into sentences (:func:`split_sentences`); each
``step`` phonemizes and synthesises the next one and sends it as an
:class:`AudioChunk`, so the first audio leaves long before the text is done.
One job runs at a time; others wait in a FIFO queue. A job with
``list_voices`` is answered at once, by ``submit``, with the voice names (in
``AudioChunk.voices``) and no audio.

Usage: ``prompt_tokens`` counts the phonemes fed to the model,
``completion_tokens`` the audio frames it made (25 ms each at 24 kHz).
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import structlog

from protocol.config import ModelConfig
from protocol.messages import (
    AudioChunk,
    Events,
    Finished,
    Job,
    JobFailed,
    SpeechJob,
    Timed,
    Usage,
    WorkerStats,
)
from workers.engine import JobError, engine_options
from workers.engines.kokoro_g2p import (
    G2P,
    G2PKind,
    G2PUnavailable,
    Phonemized,
    make_g2p,
    split_sentences,
)
from workers.engines.kokoro_synth import (
    FRAME_SAMPLES,
    MAX_PHONEMES,
    SAMPLE_RATE,
    seconds,
    synthesize,
    token_ids,
)
from workers.engines.one_at_a_time import OneAtATime
from workers.weights import local_or_hub

log = structlog.get_logger()

# OpenAI's limits for /v1/audio/speech.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
_VOICE_PART = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\(\s*(\d+(?:\.\d+)?|\.\d+)\s*\))?\s*$")

# Phoneme-string symbols that are not sounds: pauses (punctuation, spaces,
# intonation arrows), stress marks (their frames go to the next sound) and
# modifiers (length, aspiration, palatalisation: their frames go to the
# previous sound).
PAUSES = frozenset(";:,.!?¡¿—…\"«»“”()[] ↓→↗↘-'")
STRESS = frozenset("ˈˌ")
MODIFIERS = frozenset("ːˑʰʲʷ")


class KokoroOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``[models.options]`` of a ``kokoro`` model."""

    # English phonemizer: "misaki" (best; needs spaCy's en_core_web_sm) or
    # "espeak" (espeak-ng, offline). Other languages always use espeak-ng.
    g2p: G2PKind = "misaki"
    # G2P language (kokoro-mlx's codes: en-us, en-gb, es, fr-fr, hi, it,
    # pt-br); by default it follows the voice's prefix (af_* -> en-us).
    language: str | None = None
    # OpenAI's limit on `input`.
    max_input_chars: int = 4096
    # Other names for voices, so OpenAI code ("voice": "alloy") runs unchanged.
    # None: OpenAI's voice names for the Kokoro-82M voices that have them (or
    # resemble them), kept only where the model has that voice.
    voice_aliases: dict[str, str] | None = None


# OpenAI's voices and the Kokoro-82M voice each default alias names.
OPENAI_VOICES = {
    "alloy": "af_alloy",
    "ash": "am_adam",
    "ballad": "bm_george",
    "coral": "af_heart",
    "echo": "am_echo",
    "fable": "bm_fable",
    "nova": "af_nova",
    "onyx": "am_onyx",
    "sage": "af_sarah",
    "shimmer": "af_sky",
    "verse": "am_michael",
}


@dataclass
class _Job:
    job_id: str
    pieces: deque[str]
    style: Any  # mx.array (510, 1, 256): the voice (mix)
    g2p: G2P
    speed: float
    timings: bool
    start_frames: int = 0  # audio made so far, in frames
    phonemes: int = 0
    sent_audio: bool = False


class KokoroEngine:
    family = "kokoro"

    def __init__(self, model: ModelConfig) -> None:
        self.config = model
        self.options = engine_options(model, KokoroOptions)
        self._jobs: OneAtATime[_Job] = OneAtATime()
        self._stats = WorkerStats()
        self._g2ps: dict[str, G2P] = {}

    # --- lifecycle ----------------------------------------------------------

    def load(self) -> None:
        from kokoro_mlx.model import KokoroModel
        from kokoro_mlx.voices import VoiceManager

        from workers.engines.kokoro_cpu import use_fast_convs

        use_fast_convs()
        # The phonemizer first: a missing spaCy model must fail before minutes of loading.
        self._g2p_for(self.options.language or "en-us")
        path = local_or_hub(self.config)
        if not Path(path).is_dir():  # a hub id: fetched at startup, never per request
            from huggingface_hub import snapshot_download

            path = snapshot_download(repo_id=path)
        self.model = KokoroModel.from_pretrained(path)
        self.vocab: dict[str, int] = dict(self.model.vocab)
        self.voices = VoiceManager(path)
        self.voice_names = self.voices.list_voices()
        if not self.voice_names:
            raise FileNotFoundError(f"no voices in {path}/voices (expected <name>.safetensors)")
        self.aliases = self._aliases()

    def _aliases(self) -> dict[str, str]:
        configured = self.options.voice_aliases
        if configured is None:
            return {k: v for k, v in OPENAI_VOICES.items() if v in self.voice_names}
        missing = sorted(v for v in configured.values() if v not in self.voice_names)
        if missing:
            raise ValueError(f"voice_aliases name voices this model does not have: {missing}")
        return dict(configured)

    # --- jobs ---------------------------------------------------------------

    def submit(self, job: Job) -> Events | None:
        if not isinstance(job, SpeechJob):
            raise JobError(
                f"model {self.config.name!r} is a text-to-speech model: use /v1/audio/speech",
                param="model",
            )
        if job.list_voices:
            voices = AudioChunk(job.id, b"", SAMPLE_RATE, 0.0, voices=list(self.voice_names))
            return Events(outputs=[voices], finished=[Finished(job.id, "stop", Usage(0, 0))])
        text = job.input.strip()
        if not text:
            raise JobError("'input' is empty", param="input")
        if len(job.input) > self.options.max_input_chars:
            raise JobError(
                f"'input' has {len(job.input)} characters; the limit is "
                f"{self.options.max_input_chars}",
                param="input",
            )
        if not MIN_SPEED <= job.speed <= MAX_SPEED:
            raise JobError(f"'speed' must be between {MIN_SPEED} and {MAX_SPEED}", param="speed")
        known = [*self.voice_names, *self.aliases]
        names = [(self.aliases.get(n, n), w) for n, w in parse_voice(job.voice, known)]
        from kokoro_mlx.phonemize import language_from_voice

        g2p = self._g2p_for(self.options.language or language_from_voice(names[0][0]))
        self._jobs.add(
            _Job(
                job_id=job.id,
                pieces=deque(split_sentences(text)),
                style=self._mix(names),
                g2p=g2p,
                speed=job.speed,
                timings=job.timings,
            )
        )
        return None

    def _g2p_for(self, language: str) -> G2P:
        from kokoro_mlx.phonemize import normalize_language

        language = normalize_language(language)
        if language not in self._g2ps:
            try:
                self._g2ps[language] = make_g2p(self.options.g2p, language)
            except G2PUnavailable:
                raise
            except Exception as exc:  # espeak-ng rejects an unknown language
                raise JobError(f"no phonemizer for language {language!r}: {exc}") from exc
        return self._g2ps[language]

    def _mix(self, parts: list[tuple[str, float]]) -> Any:
        """The weighted average of the voices' style vectors."""
        total = sum(weight for _, weight in parts)
        mixed = None
        for name, weight in parts:
            part = self.voices.load_voice(name) * (weight / total)
            mixed = part if mixed is None else mixed + part
        return mixed

    def cancel(self, job_id: str) -> bool:
        return self._jobs.cancel(job_id) is not None

    def has_work(self) -> bool:
        return self._jobs.has_work()

    def stats(self) -> WorkerStats:
        return self._jobs.count(self._stats)

    # --- synthesis ----------------------------------------------------------

    def step(self, budget_s: float) -> Events:
        """Synthesise one sentence of the running job (a vocoder pass cannot be
        cut shorter)."""
        events = Events(outputs=[], finished=[], failed=[])
        jobs = self._jobs
        jobs.start_next()
        job = jobs.running
        if job is None:
            return events
        chunk = self._next_chunk(job)
        if chunk is not None:
            events.outputs.append(chunk)
            job.sent_audio = True
        if not job.pieces:
            jobs.finish()
            self._stats.requests_finished += 1
            if job.sent_audio:
                usage = Usage(job.phonemes, job.start_frames)
                events.finished.append(Finished(job.job_id, "stop", usage))
            else:
                events.failed.append(
                    JobFailed(
                        job.job_id,
                        400,
                        "invalid_request_error",
                        "'input' has nothing to speak (no pronounceable text)",
                        "input",
                    )
                )
        return events

    def _next_chunk(self, job: _Job) -> AudioChunk | None:
        """The next sentence's audio, or None if it has no phonemes (e.g. "...")."""
        text = job.pieces.popleft()
        spoken = job.g2p(text)
        ids, kept = token_ids(self.vocab, spoken.phonemes)
        if not any(c not in PAUSES and c not in STRESS and not c.isspace() for c in kept):
            return None  # punctuation only: nothing to say
        if len(ids) > MAX_PHONEMES:  # a rare over-long piece: Kokoro's context is fixed
            ids, kept = ids[:MAX_PHONEMES], kept[:MAX_PHONEMES]
        style = self.voices.get_style(job.style, len(ids) + 2)
        result = synthesize(self.model, ids, style, job.speed)
        frames = int(result.durations.sum())
        start = job.start_frames * FRAME_SAMPLES / SAMPLE_RATE
        chunk = AudioChunk(job.job_id, pcm16(result.audio), SAMPLE_RATE, start)
        if job.timings:
            edges = seconds(job.start_frames + np.concatenate([[0], np.cumsum(result.durations)]))
            # Token i of the model's input is kept[i - 1]; tokens 0 and -1 are the pads.
            starts, ends = edges[1:-2], edges[2:-1]
            chunk.phonemes = phoneme_timeline(kept, starts, ends)
            chunk.words = word_timeline(spoken, kept, starts, ends, self.vocab)
        job.start_frames += frames
        job.phonemes += len(ids)
        self._stats.prompt_tokens += len(ids)
        self._stats.generation_tokens += frames
        return chunk


def parse_voice(spec: str, known: list[str]) -> list[tuple[str, float]]:
    """``"af_bella"``, or a weighted mix ``"af_bella(2)+af_sky(1)"`` (weights
    default to 1; ``,`` separates too) -> [(name, weight)]; 400 if unknown."""
    parts: list[tuple[str, float]] = []
    for part in re.split(r"[+,]", spec):
        match = _VOICE_PART.match(part)
        if match is None:
            raise JobError(
                f"'voice' {spec!r} is not a voice name or a mix like 'af_bella(2)+af_sky(1)'",
                param="voice",
            )
        name, weight = match.group(1), float(match.group(2) or 1)
        if name not in known:
            shown = ", ".join(known[:60]) + (" ..." if len(known) > 60 else "")
            raise JobError(f"unknown voice {name!r}; voices: {shown}", param="voice")
        if weight <= 0:
            raise JobError(f"voice {name!r} has weight 0; weights must be > 0", param="voice")
        parts.append((name, weight))
    return parts


def pcm16(audio: np.ndarray) -> bytes:
    """Float audio -> 16-bit little-endian PCM (clipped to full scale)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def phoneme_timeline(kept: str, starts: np.ndarray, ends: np.ndarray) -> list[Timed]:
    """Timed sounds of a phoneme string: pauses left out, a stress mark's
    time given to the sound after it, a modifier's to the sound before."""
    out: list[Timed] = []
    pending: float | None = None  # start of a stress mark waiting for its sound
    for symbol, start, end in zip(kept, starts.tolist(), ends.tolist(), strict=True):
        if symbol in PAUSES or symbol.isspace():
            pending = None
        elif symbol in STRESS:
            pending = start if pending is None else pending
        elif (symbol in MODIFIERS or unicodedata.combining(symbol)) and out:
            last = out[-1]
            out[-1] = Timed(last.label + symbol, last.start, end)
        else:
            out.append(Timed(symbol, pending if pending is not None else start, end))
            pending = None
    return out


def word_timeline(
    spoken: Phonemized,
    kept: str,
    starts: np.ndarray,
    ends: np.ndarray,
    vocab: dict[str, int],
) -> list[Timed]:
    """Each word's span, from where its phonemes sit in the model's input; with
    no word list from the G2P, the phoneme string's space-separated words."""
    words = spoken.words
    if words is None:
        words = [(w, w) for w in kept.split()]
    out: list[Timed] = []
    at = 0
    for word, phonemes in words:
        sounds = "".join(c for c in phonemes if c in vocab).strip("".join(PAUSES))
        if not sounds:
            continue
        found = kept.find(sounds, at)
        if found < 0:
            continue  # the G2P's word did not survive as written: no timing for it
        at = found + len(sounds)
        label = word.strip("".join(PAUSES)) or word
        out.append(Timed(label, float(starts[found]), float(ends[at - 1])))
    return out
