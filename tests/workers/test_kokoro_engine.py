"""The Kokoro engine in-process on the demo model: sentences as chunks, exact
timings from the duration predictor, voices and mixes, refusals."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from protocol.config import ModelConfig
from protocol.messages import AudioChunk, ChatJob, Finished, JobFailed, SpeechJob
from tests.workers.engine_helpers import submitted
from workers.engine import JobError
from workers.engines.kokoro import KokoroEngine, parse_voice, phoneme_timeline
from workers.engines.kokoro_g2p import make_g2p, split_sentences
from workers.engines.kokoro_synth import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    seconds,
    synthesize,
    token_ids,
)


def config(path: Path, **options: object) -> ModelConfig:
    return ModelConfig(
        name="demo-kokoro-tiny",
        family="kokoro",
        path=str(path),
        endpoint="inproc://unused",
        options={"g2p": "espeak", **options},
    )


@pytest.fixture(scope="module")
def engine(demo_kokoro: Path) -> KokoroEngine:
    engine = KokoroEngine(config(demo_kokoro))
    engine.load()
    return engine


def run(engine: KokoroEngine, job: SpeechJob) -> tuple[list[AudioChunk], Finished | JobFailed]:
    answered = submitted(engine, job)
    chunks: list[AudioChunk] = []
    while answered or engine.has_work():
        events = answered.pop() if answered else engine.step(0.02)
        chunks += [o for o in events.outputs if isinstance(o, AudioChunk)]
        for end in [*events.finished, *events.failed]:
            return chunks, end
    raise AssertionError("the job never ended")


def test_each_sentence_is_a_chunk_and_timings_come_from_the_durations(
    engine: KokoroEngine,
) -> None:
    chunks, end = run(engine, SpeechJob("s", "Hi. Go now!", "af_demo", timings=True))
    assert isinstance(end, Finished) and len(chunks) == 2
    samples = [len(c.pcm) // 2 for c in chunks]
    assert all(n % FRAME_SAMPLES == 0 for n in samples)
    # Each chunk starts where the previous one's audio ended.
    assert chunks[0].start == 0.0
    assert chunks[1].start == pytest.approx(samples[0] / SAMPLE_RATE)
    # Usage: phonemes in, frames out; frames are exactly the audio.
    assert end.usage.completion_tokens * FRAME_SAMPLES == sum(samples)
    assert end.usage.prompt_tokens > 0
    for chunk, n in zip(chunks, samples, strict=True):
        times = [(p.start, p.end) for p in chunk.phonemes]
        assert times == sorted(times) and all(s < e for s, e in times)
        assert chunk.start < times[0][0] and times[-1][1] < chunk.start + n / SAMPLE_RATE
        assert [w.label for w in chunk.words] in (["Hi"], ["Go", "now"])
    assert [p.label for p in chunks[0].phonemes] == ["h", "I"]


def test_the_timeline_is_the_duration_predictors_frames(engine: KokoroEngine) -> None:
    g2p = make_g2p("espeak", "en-us")
    ids, kept = token_ids(engine.vocab, g2p("Go now!").phonemes)
    style = engine.voices.get_style(engine.voices.load_voice("af_demo"), len(ids) + 2)
    result = synthesize(engine.model, ids, style, 1.0)
    assert int(result.durations.sum()) * FRAME_SAMPLES == len(result.audio)
    # The demo's durations differ between phonemes: evenly spread times would not match.
    edges = seconds(np.concatenate([[0], np.cumsum(result.durations)]))
    assert len(set(result.durations.tolist())) > 1
    timeline = phoneme_timeline(kept, edges[1:-2], edges[2:-1])
    chunks, _ = run(engine, SpeechJob("t", "Go now!", "af_demo", timings=True))
    assert [(p.label, p.start, p.end) for p in chunks[0].phonemes] == [
        (p.label, p.start, p.end) for p in timeline
    ]


def test_synthesize_matches_kokoro_mlx_forward(engine: KokoroEngine) -> None:
    phonemes = "hˈI."
    ids, _ = token_ids(engine.vocab, phonemes)
    style = engine.voices.get_style(engine.voices.load_voice("af_demo"), len(ids) + 2)
    mx.random.seed(3)  # the vocoder's noise source
    ours = synthesize(engine.model, ids, style, 1.25).audio
    mx.random.seed(3)
    theirs = np.array(engine.model.forward(phonemes, style, 1.25))
    assert np.array_equal(ours, theirs)


def test_a_voice_mix_is_the_weighted_average(engine: KokoroEngine) -> None:
    a, b = engine.voices.load_voice("af_demo"), engine.voices.load_voice("af_tiny")
    mixed = engine._mix(parse_voice("af_demo(3)+af_tiny(1)", engine.voice_names))
    assert mx.allclose(mixed, 0.75 * a + 0.25 * b).item()
    assert parse_voice("af_demo, af_tiny", engine.voice_names) == [
        ("af_demo", 1.0),
        ("af_tiny", 1.0),
    ]


@pytest.mark.parametrize(
    ("job", "param"),
    [
        (SpeechJob("x", "Hi.", "nobody"), "voice"),
        (SpeechJob("x", "Hi.", "af_demo(0)"), "voice"),
        (SpeechJob("x", "Hi.", "af_demo((2)"), "voice"),
        (SpeechJob("x", "   ", "af_demo"), "input"),
        (SpeechJob("x", "Hi.", "af_demo", speed=9.0), "speed"),
        (SpeechJob("x", "Hi." * 2000, "af_demo"), "input"),
    ],
)
def test_bad_jobs_are_refused_naming_the_field(
    engine: KokoroEngine, job: SpeechJob, param: str
) -> None:
    with pytest.raises(JobError) as refused:
        engine.submit(job)
    assert refused.value.status == 400 and refused.value.param == param


def test_text_with_nothing_to_say_fails_with_400(engine: KokoroEngine) -> None:
    chunks, end = run(engine, SpeechJob("x", "... !", "af_demo"))
    assert not chunks and isinstance(end, JobFailed) and end.param == "input"


def test_chat_jobs_are_refused(engine: KokoroEngine) -> None:
    with pytest.raises(JobError):
        engine.submit(ChatJob("c", [], None))  # type: ignore[arg-type]


def test_voices_are_listed_at_once(engine: KokoroEngine) -> None:
    chunks, end = run(engine, SpeechJob("v", "", "", list_voices=True))
    assert chunks[0].voices == ["af_demo", "af_tiny", "am_demo"] and not chunks[0].pcm
    assert isinstance(end, Finished)


def test_cancel_drops_the_rest_of_the_text(engine: KokoroEngine) -> None:
    engine.submit(SpeechJob("c", "Hi. Go. Now.", "af_demo"))
    engine.step(0.02)
    assert engine.cancel("c") and not engine.has_work() and not engine.cancel("c")


def test_misaki_without_the_spacy_model_fails_at_load_naming_the_fix(
    demo_kokoro: Path,
) -> None:
    engine = KokoroEngine(config(demo_kokoro, g2p="misaki"))
    with pytest.raises(RuntimeError, match="python -m spacy download en_core_web_sm"):
        engine.load()


def test_sentences_split_at_their_ends_not_at_abbreviations() -> None:
    text = "Hello there. Mr. Smith said hi! Really?\n\nNew paragraph"
    assert split_sentences(text) == [
        "Hello there.",
        "Mr. Smith said hi!",
        "Really?",
        "New paragraph",
    ]
    assert all(len(p) <= 40 for p in split_sentences("word, " * 50, max_chars=40))


def test_espeak_words_are_paired_with_their_phonemes() -> None:
    spoken = make_g2p("espeak", "en-us")("I have 42 apples.")
    assert spoken.words is not None
    assert [w for w, _ in spoken.words] == ["I", "have", "42", "apples"]
    assert len(spoken.words[2][1].split()) == 2  # forty two


def test_voice_aliases_let_openai_voice_names_through(demo_kokoro: Path) -> None:
    aliased = KokoroEngine(config(demo_kokoro, voice_aliases={"alloy": "af_demo"}))
    aliased.load()
    assert aliased.aliases == {"alloy": "af_demo"}
    # The same voice: the same durations (the vocoder's noise source differs run to run).
    by_alias, _ = run(aliased, SpeechJob("a", "Hi there.", "alloy", timings=True))
    by_name, _ = run(aliased, SpeechJob("b", "Hi there.", "af_demo", timings=True))
    assert [c.phonemes for c in by_alias] == [c.phonemes for c in by_name]
    assert [len(c.pcm) for c in by_alias] == [len(c.pcm) for c in by_name]
    mixed, end = run(aliased, SpeechJob("m", "Hi.", "alloy(2)+af_tiny(1)"))
    assert isinstance(end, Finished) and mixed
    broken = KokoroEngine(config(demo_kokoro, voice_aliases={"alloy": "af_nobody"}))
    with pytest.raises(ValueError, match="af_nobody"):
        broken.load()


def test_openai_voice_names_default_to_kokoro_82ms_voices_the_model_has(
    engine: KokoroEngine,
) -> None:
    # The demo model's voices are none of Kokoro-82M's, so no default alias applies.
    assert engine.aliases == {}
    with pytest.raises(JobError) as caught:
        engine.submit(SpeechJob("x", "Hi.", "alloy"))
    assert caught.value.param == "voice"
