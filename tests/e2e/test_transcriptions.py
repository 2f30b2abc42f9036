"""/v1/audio/transcriptions and /translations with the official openai SDK,
against a real gateway and a real Whisper worker (the random demo model: its
text is gibberish, so these check shapes, syntax and timing, not words)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import Stack, running_stack

WHISPER, LLM = "demo-whisper-tiny", "demo-llama-tiny"
MAX_UPLOAD = 200_000  # bytes; "hello world" is ~45 KB as WAV

SRT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n[^\n]+\n\n"
)
VTT_CUE = re.compile(
    r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n[^\n]+\n\n"
)


@pytest.fixture(scope="module")
def stack(
    demo_whisper: Path, demo_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The demo Whisper (each window bounded: 8 tokens, no temperature
    fallback) and an LLM, for the wrong-family check."""
    models: list[dict[str, Any]] = [
        {
            "name": WHISPER,
            "family": "whisper",
            "path": str(demo_whisper),
            "aliases": ["whisper-1"],
            "demo": True,
            "options": {"sample_len": 8, "temperature_fallback": False},
        },
        {"name": LLM, "family": "llm", "path": str(demo_models[LLM]), "demo": True},
    ]
    tmp = tmp_path_factory.mktemp("whisper-stack")
    with running_stack(models, tmp, gateway={"max_upload_bytes": MAX_UPLOAD}) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with stack.openai_client() as c:
        yield c


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def test_json_has_text_and_duration_usage(client: openai.OpenAI, speech: dict[str, bytes]) -> None:
    result = client.audio.transcriptions.create(
        model=WHISPER, file=("hello.wav", speech["wav"]), language="en"
    )
    assert isinstance(result.text, str) and result.text
    assert result.usage is not None
    assert result.usage.type == "duration" and result.usage.seconds == 2  # 1.03 s, rounded up


@pytest.mark.parametrize("ext", ["mp3", "ogg"])
def test_other_formats_are_decoded(
    client: openai.OpenAI, speech: dict[str, bytes], ext: str
) -> None:
    text = client.audio.transcriptions.create(
        model="whisper-1", file=(f"hello.{ext}", speech[ext]), response_format="text"
    )
    assert isinstance(text, str) and text.endswith("\n")


def test_verbose_json_has_segments_and_words(
    client: openai.OpenAI, speech: dict[str, bytes]
) -> None:
    result = client.audio.transcriptions.create(
        model=WHISPER,
        file=("hello.wav", speech["wav"]),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        prompt="Greetings.",
    )
    raw = result.model_dump()
    assert {"task", "language", "duration", "text", "segments", "words"} <= raw.keys()
    assert raw["task"] == "transcribe" and 1.0 < result.duration < 1.1
    assert result.segments and result.words
    for segment in result.segments:
        assert set(segment.model_dump()) >= {
            "id", "seek", "start", "end", "text", "tokens", "temperature",
            "avg_logprob", "compression_ratio", "no_speech_prob",
        }  # fmt: skip
        assert 0 <= segment.start <= segment.end <= result.duration
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    for word in result.words:
        assert set(word.model_dump()) == {"word", "start", "end"}
        assert 0 <= word.start <= word.end <= result.duration


def test_verbose_json_gives_segments_only_unless_words_are_asked(
    client: openai.OpenAI, speech: dict[str, bytes]
) -> None:
    result = client.audio.transcriptions.create(
        model=WHISPER, file=("hello.wav", speech["wav"]), response_format="verbose_json"
    )
    assert result.segments and result.words is None


def test_srt_cues_are_valid(client: openai.OpenAI, speech: dict[str, bytes]) -> None:
    srt = client.audio.transcriptions.create(
        model=WHISPER, file=("hello.wav", speech["wav"]), response_format="srt"
    )
    assert isinstance(srt, str)
    cues = list(SRT_CUE.finditer(srt))
    assert cues and "".join(c.group(0) for c in cues) == srt  # nothing but cues
    for number, cue in enumerate(cues, start=1):
        assert int(cue.group(1)) == number
        assert 0 <= seconds(*cue.groups()[1:5]) <= seconds(*cue.groups()[5:9]) <= 1.1


def test_vtt_has_its_header_and_valid_cues(client: openai.OpenAI, speech: dict[str, bytes]) -> None:
    vtt = client.audio.transcriptions.create(
        model=WHISPER, file=("hello.wav", speech["wav"]), response_format="vtt"
    )
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT\n\n")
    body = vtt.removeprefix("WEBVTT\n\n")
    cues = list(VTT_CUE.finditer(body))
    assert cues and "".join(c.group(0) for c in cues) == body
    for cue in cues:
        assert 0 <= seconds(*cue.groups()[:4]) <= seconds(*cue.groups()[4:]) <= 1.1


def test_text_is_plain_text(stack: Stack, speech: dict[str, bytes]) -> None:
    reply = httpx.post(
        f"{stack.base_url}/v1/audio/transcriptions",
        files={"file": ("hello.wav", speech["wav"])},
        data={"model": WHISPER, "response_format": "text"},
        timeout=60,
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")


# openai 3.x marks audio.translations deprecated; the endpoint is what we test.
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translation_answers_in_english(client: openai.OpenAI, speech: dict[str, bytes]) -> None:
    result = client.audio.translations.create(
        model=WHISPER, file=("hello.mp3", speech["mp3"]), response_format="verbose_json"
    )
    assert result.language == "english" and result.segments
    assert result.model_dump()["task"] == "translate"
    plain = client.audio.translations.create(model=WHISPER, file=("hello.ogg", speech["ogg"]))
    assert isinstance(plain.text, str)


def test_unreadable_audio_is_400_naming_the_file(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.transcriptions.create(model=WHISPER, file=("x.bin", b"\x00\x01junk" * 300))
    message = error.value.body["message"]  # type: ignore[index]
    assert "could not decode the uploaded file 'x.bin' as audio" in message
    assert "Invalid data" in message  # ffmpeg's own words
    assert error.value.body["param"] == "file"  # type: ignore[index]


def test_too_large_upload_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        client.audio.transcriptions.create(model=WHISPER, file=("big.wav", b"\0" * 300_000))
    assert error.value.status_code == 413


def test_missing_file_is_400(stack: Stack) -> None:
    reply = httpx.post(
        f"{stack.base_url}/v1/audio/transcriptions",
        files={"model": (None, WHISPER)},
        timeout=30,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "file"


def test_a_language_model_is_400(client: openai.OpenAI, speech: dict[str, bytes]) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.transcriptions.create(model=LLM, file=("hello.wav", speech["wav"]))
    assert error.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "mp4"}, "response_format"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),  # needs verbose_json
        ({"language": "klingon"}, "language"),
        ({"temperature": "warm"}, "temperature"),
    ],
)
def test_bad_fields_are_400_naming_them(
    stack: Stack, speech: dict[str, bytes], fields: dict[str, str], param: str
) -> None:
    reply = httpx.post(
        f"{stack.base_url}/v1/audio/transcriptions",
        files={"file": ("hello.wav", speech["wav"])},
        data={"model": WHISPER, **fields},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_chat_on_a_whisper_model_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=WHISPER, messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["param"] == "model"  # type: ignore[index]
