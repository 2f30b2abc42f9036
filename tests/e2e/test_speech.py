"""/v1/audio/speech and /v1/audio/voices with the official openai SDK against a
real gateway and a real Kokoro worker (the random-weight demo model)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.e2e.harness import Stack, running_stack

TTS = "demo-kokoro-tiny"
NOT_TTS = "not-a-speech-model"
VOICE = "af_demo"
# Kokoro's audio, as a client sees it: 24 kHz, made in 25 ms frames.
SAMPLE_RATE = 24_000
FRAME_SAMPLES = 600


@pytest.fixture(scope="module")
def stack(demo_kokoro: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("speech")
    models: list[dict[str, Any]] = [
        {"name": TTS, "family": "kokoro", "path": str(demo_kokoro), "demo": True,
         "options": {"g2p": "espeak"}},
        # Never loads (no weights): only its family matters here.
        {"name": NOT_TTS, "family": "llm", "path": str(tmp / "none")},
    ]  # fmt: skip
    with running_stack(models, tmp, ready=[TTS]) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Samples and rate of an encoded file: soundfile where it reads the
    format, ffmpeg (to WAV) otherwise."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2"), SAMPLE_RATE
    if fmt in ("aac", "mp3"):
        data = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", "pipe:0", "-f", "wav", "pipe:1"],
            input=data, capture_output=True, check=True,
        ).stdout  # fmt: skip
    audio, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return audio, rate


def with_visemes(client: openai.OpenAI, text: str, **extra: Any) -> dict[str, Any]:
    response = client.audio.speech.create(
        model=TTS, input=text, voice=VOICE, response_format="wav",
        extra_body={"include_visemes": True, **extra},
    )  # fmt: skip
    return json.loads(response.read())


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mp3", "opus", "aac"])
def test_every_format_decodes_to_24_khz_audio_of_the_stated_duration(
    client: openai.OpenAI, fmt: str
) -> None:
    reply = client.audio.speech.create(
        model=TTS, input="Hi.", voice=VOICE, response_format=fmt,  # type: ignore[arg-type]
        extra_body={"include_visemes": True},
    )  # fmt: skip
    body = json.loads(reply.read())
    assert body["format"] == fmt and body["sample_rate"] == SAMPLE_RATE
    audio, rate = decode(base64.b64decode(body["audio"]), fmt)
    assert rate == SAMPLE_RATE
    # Exact, but for the lossy codecs' framing: ADTS AAC has no gapless info,
    # so decoders keep the priming (1024 samples) and the last frame's padding;
    # MP3's LAME header leaves up to a frame (576 samples at 24 kHz).
    tolerance = {"aac": 2048, "mp3": 576}.get(fmt, 0) / SAMPLE_RATE
    assert abs(len(audio) / rate - body["duration"]) <= tolerance


def test_the_audio_stream_is_the_file_and_the_default_format_is_mp3(
    client: openai.OpenAI,
) -> None:
    with client.audio.speech.with_streaming_response.create(
        model=TTS, input="Hi.", voice=VOICE
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        data = b"".join(response.iter_bytes())
    audio, rate = decode(data, "mp3")
    assert rate == SAMPLE_RATE and len(audio) > 0


def test_streamed_wav_reads_as_a_whole_file(client: openai.OpenAI) -> None:
    reply = client.audio.speech.create(model=TTS, input="Hi.", voice=VOICE, response_format="wav")
    audio, rate = decode(reply.read(), "wav")
    assert rate == SAMPLE_RATE and len(audio) % FRAME_SAMPLES == 0


def test_the_first_sentence_arrives_before_the_last_is_synthesised(
    client: openai.OpenAI,
) -> None:
    started = time.perf_counter()
    arrivals: list[tuple[float, int]] = []
    with client.audio.speech.with_streaming_response.create(
        model=TTS, input="Hi. Go now. Yes.", voice=VOICE, response_format="pcm"
    ) as response:
        for data in response.iter_bytes():
            arrivals.append((time.perf_counter() - started, len(data)))
    first, total = arrivals[0][0], arrivals[-1][0]
    # Three sentences of about equal cost: the first comes at about a third.
    assert first < 0.75 * total, arrivals
    assert sum(n for _, n in arrivals) % FRAME_SAMPLES * 2 == 0


def sse_events(stack: Stack, **body: Any) -> list[dict[str, Any]]:
    payload = {"model": TTS, "voice": VOICE, "stream_format": "sse", **body}
    with httpx.stream("POST", f"{stack.base_url}/v1/audio/speech", json=payload, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def test_sse_sends_audio_deltas_then_done_with_usage(stack: Stack) -> None:
    events = sse_events(stack, input="Hi. Go.", response_format="pcm")
    *deltas, done = events
    assert len(deltas) == 2 and all(e["type"] == "speech.audio.delta" for e in deltas)
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # Output tokens are the model's 25 ms frames.
    assert usage["output_tokens"] * FRAME_SAMPLES * 2 == len(pcm)


def test_sse_viseme_events_precede_their_audio_with_absolute_times(stack: Stack) -> None:
    events = sse_events(stack, input="Hi. Go.", response_format="pcm", include_visemes=True)
    kinds = [e["type"] for e in events]
    assert kinds == ["speech.visemes", "speech.audio.delta"] * 2 + ["speech.audio.done"]
    first, second = events[0], events[2]
    first_samples = len(base64.b64decode(events[1]["audio"])) // 2
    assert first["start"] == 0 and second["start"] == pytest.approx(first_samples / SAMPLE_RATE)
    assert second["visemes"][0]["start"] == second["start"]
    assert second["visemes"][-1]["end"] == second["end"]
    assert all(p["start"] >= second["start"] for p in second["phonemes"])


def test_visemes_cover_the_audio_in_order_from_the_models_durations(
    client: openai.OpenAI,
) -> None:
    body = with_visemes(client, "Hello world. Go now!")
    duration, visemes = body["duration"], body["visemes"]
    assert visemes[0]["start"] == 0
    for before, after in zip(visemes, visemes[1:], strict=False):
        assert before["end"] == after["start"] and before["start"] < before["end"]
    assert abs(visemes[-1]["end"] - duration) <= 0.05
    names = {v["viseme"] for v in visemes}
    assert "sil" in names and len(names) > 3 and all(0 <= v["azure_id"] <= 21 for v in visemes)
    # Every boundary sits on the 25 ms frame grid of Kokoro's duration predictor.
    frames = [
        p[k] / (FRAME_SAMPLES / SAMPLE_RATE) for p in body["phonemes"] for k in ("start", "end")
    ]
    assert np.allclose(frames, np.round(frames), atol=1e-4)
    # Usage counts exactly the audio's frames.
    assert body["usage"]["output_tokens"] * FRAME_SAMPLES / SAMPLE_RATE == pytest.approx(duration)
    words = [w["word"] for w in body["words"]]
    assert words == ["Hello", "world", "Go", "now"]
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts) and body["words"][-1]["end"] <= duration


def test_a_voice_mix_speaks_and_differs_from_its_voices(client: openai.OpenAI) -> None:
    def pcm(voice: str) -> bytes:
        return client.audio.speech.create(
            model=TTS, input="Hi.", voice=voice, response_format="pcm"
        ).read()

    mixed = pcm("af_demo(2)+af_tiny(1)")
    assert mixed and mixed != pcm("af_tiny")


def test_voices_are_listed_per_model(client: openai.OpenAI, stack: Stack) -> None:
    everything = httpx.get(f"{stack.base_url}/v1/audio/voices").json()
    assert {v["id"] for v in everything["data"]} == {"af_demo", "af_tiny", "am_demo"}
    assert {v["model"] for v in everything["data"]} == {TTS}
    one = httpx.get(f"{stack.base_url}/v1/audio/voices", params={"model": TTS}).json()
    assert one == everything
    wrong = httpx.get(f"{stack.base_url}/v1/audio/voices", params={"model": NOT_TTS})
    assert wrong.status_code == 400


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"voice": "nobody"}, "voice"),
        ({"voice": "af_demo(0)"}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 10}, "speed"),
        ({"input": ""}, "input"),
        ({"input": "x" * 5000}, "input"),
        ({"stream_format": "chunks"}, "stream_format"),
        ({"voice": 3}, "voice"),
        ({"model": NOT_TTS}, "model"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    request = {"model": TTS, "input": "Hi.", "voice": VOICE, **fields}
    with pytest.raises(openai.BadRequestError) as error:
        client.post("/audio/speech", body=request, cast_to=httpx.Response)
    assert error.value.body["param"] == param  # type: ignore[index]
    if param == "response_format":
        assert "wav, pcm" in error.value.message or "mp3, opus" in error.value.message


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="nope", input="Hi.", voice=VOICE)


@pytest.mark.parametrize(
    "answer", [{"include_visemes": True}, {"stream": False}], ids=["visemes-json", "whole-wav"]
)
def test_a_client_that_hangs_up_on_an_unstreamed_answer_stops_the_synthesis(
    stack: Stack, answer: dict[str, Any]
) -> None:
    """Answered as a whole, the speech still stops at the next sentence when
    its client leaves, as a streamed one does."""
    body = {"model": TTS, "voice": VOICE, "response_format": "wav", "input": "Go now. " * 400}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.base_url}/v1/audio/speech", json={**body, **answer}, timeout=1.0)
    stack.wait_until(
        lambda h: h["models"][TTS]["active"] == 0 and h["models"][TTS]["in_flight"] == 0,
        timeout=5,
        what="the abandoned speech to stop",
    )
