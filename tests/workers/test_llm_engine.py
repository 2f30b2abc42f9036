"""The LLM engine in-process on a demo model: batching, cancel, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.messages import (
    ChatJob,
    ChatMessage,
    CompletionJob,
    Events,
    Finished,
    SamplingParams,
)
from tests.workers.engine_helpers import load_engine, run_to_end, submitted, text_of
from workers.engine import JobError
from workers.engines.llm import LLMEngine

HI = [ChatMessage("user", "hi")]


@pytest.fixture(scope="module")
def engine(demo_models: dict[str, Path]) -> LLMEngine:
    return load_engine("demo-llama-tiny", demo_models["demo-llama-tiny"], context_length=256)


def test_concurrent_jobs_share_decode_steps(engine: LLMEngine) -> None:
    for i in range(4):
        engine.submit(ChatJob(f"b{i}", HI, SamplingParams(max_tokens=30, temperature=0)))
    steps = run_to_end(engine)
    # Continuous batching: some step advanced all four jobs at once.
    assert any(len({d.id for d in s.deltas}) == 4 for s in steps)
    finished = [f for s in steps for f in s.finished]
    assert sorted(f.id for f in finished) == [f"b{i}" for i in range(4)]
    assert all(f.usage.completion_tokens == 30 for f in finished)


def test_a_job_joins_a_running_batch(engine: LLMEngine) -> None:
    engine.submit(ChatJob("first", HI, SamplingParams(max_tokens=60, temperature=0)))
    engine.step(0.005)
    engine.submit(ChatJob("second", HI, SamplingParams(max_tokens=5, temperature=0)))
    steps = run_to_end(engine)
    done = [f.id for s in steps for f in s.finished]
    assert done == ["second", "first"]  # the short late job did not wait for the long one


def test_a_solo_sequence_moves_into_the_batch_without_changing_its_text(
    engine: LLMEngine,
) -> None:
    """A lone request decodes solo; when a second arrives it continues in the
    batch from its KV cache, and its greedy text is what mlx-lm generates."""
    from mlx_lm import generate

    prompt = "Once upon a time"
    tokens = engine.prompt_tokens(CompletionJob("x", prompt, SamplingParams()))
    expected = generate(engine.model, engine.tokenizer, tokens, max_tokens=40)

    engine.submit(CompletionJob("solo", prompt, SamplingParams(max_tokens=40, temperature=0)))
    steps = [engine.step(0.0) for _ in range(5)]  # a few solo tokens
    assert engine._solo is not None
    engine.submit(CompletionJob("other", "Hi", SamplingParams(max_tokens=10, temperature=0)))
    assert engine._solo is None and len(engine._batched) == 2
    steps += run_to_end(engine)
    assert text_of(steps, "solo") == expected
    (done,) = [f for s in steps for f in s.finished if f.id == "solo"]
    assert done.usage.completion_tokens == 40 and done.finish_reason == "length"


def test_a_seeded_solo_sequence_keeps_its_draws_when_it_joins_the_batch(
    engine: LLMEngine,
) -> None:
    params = SamplingParams(max_tokens=30, temperature=1.0, seed=5)
    engine.submit(CompletionJob("alone", "Once", params))
    alone = text_of(run_to_end(engine), "alone")

    engine.submit(CompletionJob("moved", "Once", params))
    steps = [engine.step(0.0) for _ in range(4)]
    engine.submit(CompletionJob("other", "Hi", SamplingParams(max_tokens=5, temperature=0)))
    steps += run_to_end(engine)
    assert text_of(steps, "moved") == alone


def test_cancel_frees_the_slot(engine: LLMEngine) -> None:
    engine.submit(ChatJob("long", HI, SamplingParams(max_tokens=200, temperature=0)))
    engine.step(0.005)
    assert engine.stats().active == 1
    assert engine.cancel("long")  # solo
    assert engine.stats().active == 0 and not engine.has_work()
    assert not engine.cancel("long")
    for i in range(2):
        engine.submit(ChatJob(f"pair{i}", HI, SamplingParams(max_tokens=200, temperature=0)))
    engine.step(0.005)
    assert engine.cancel("pair0")  # batched
    assert engine.stats().active == 1
    assert engine.cancel("pair1")
    assert not engine.has_work()


def test_greedy_equals_mlx_lm_generate(engine: LLMEngine) -> None:
    from mlx_lm import generate

    tokens = engine.prompt_tokens(CompletionJob("x", "The cat", SamplingParams()))
    expected = generate(engine.model, engine.tokenizer, tokens, max_tokens=25)
    engine.submit(CompletionJob("g", "The cat", SamplingParams(max_tokens=25, temperature=0)))
    steps = run_to_end(engine)
    text = "".join(d.text for s in steps for d in s.deltas)
    text += "".join(f.text for s in steps for f in s.finished)
    assert text == expected


def test_prompt_longer_than_context_is_refused(engine: LLMEngine) -> None:
    with pytest.raises(JobError) as err:
        engine.submit(CompletionJob("big", list(range(300)), SamplingParams()))
    assert err.value.code == "context_length_exceeded"
    assert "256" in str(err.value) and "300" in str(err.value)


def test_max_tokens_is_capped_to_the_context(engine: LLMEngine) -> None:
    engine.submit(CompletionJob("cap", list(range(250)), SamplingParams(max_tokens=100)))
    (finished,) = [f for s in run_to_end(engine) for f in s.finished]
    assert finished.usage.completion_tokens == 6
    assert finished.finish_reason == "length"


def test_token_ids_outside_the_vocabulary_are_refused(engine: LLMEngine) -> None:
    with pytest.raises(JobError, match="token ids"):
        engine.submit(CompletionJob("bad", [10**6], SamplingParams()))


def finished_of(steps: list[Events], job_id: str) -> Finished:
    (done,) = [f for s in steps for f in s.finished if f.id == job_id]
    return done


def test_a_repeated_prompt_reuses_its_kv_cache_and_says_so(engine: LLMEngine) -> None:
    prompt = "A prompt long enough to be worth caching, word after word after word."
    params = SamplingParams(max_tokens=12, temperature=0)
    engine.submit(CompletionJob("first", prompt, params))
    first = run_to_end(engine)
    engine.submit(CompletionJob("again", prompt, params))
    again = run_to_end(engine)
    n_prompt = finished_of(first, "first").usage.prompt_tokens
    assert finished_of(first, "first").usage.cached_tokens == 0
    assert finished_of(again, "again").usage.cached_tokens == n_prompt - 1
    assert text_of(again, "again") == text_of(first, "first")


def test_the_next_turn_only_prefills_its_new_tokens(engine: LLMEngine) -> None:
    from mlx_lm import generate

    turn1 = [ChatMessage("user", "Say something about rivers and the sea.")]
    engine.submit(ChatJob("t1", turn1, SamplingParams(max_tokens=10, temperature=0)))
    steps = run_to_end(engine)
    turn2 = [*turn1, ChatMessage("assistant", text_of(steps, "t1")), ChatMessage("user", "More.")]
    job = ChatJob("t2", turn2, SamplingParams(max_tokens=10, temperature=0))
    tokens = engine.prompt_tokens(job)
    engine.submit(job)
    steps = run_to_end(engine)
    done = finished_of(steps, "t2")
    assert done.usage.cached_tokens >= cacheable_prefix(engine, turn1)
    # Reusing the cache changes nothing in the output.
    assert text_of(steps, "t2") == generate(engine.model, engine.tokenizer, tokens, max_tokens=10)


def cacheable_prefix(engine: LLMEngine, messages: list[ChatMessage]) -> int:
    return len(engine.prompt_tokens(ChatJob("n", messages, SamplingParams()))) - 1


def test_batched_sequences_are_cached_too(engine: LLMEngine) -> None:
    params = SamplingParams(max_tokens=8, temperature=0)
    for i in range(2):
        engine.submit(CompletionJob(f"b{i}", f"Batched prompt number {i} goes here", params))
    run_to_end(engine)
    engine.submit(CompletionJob("b1-again", "Batched prompt number 1 goes here", params))
    assert finished_of(run_to_end(engine), "b1-again").usage.cached_tokens > 0


def split_reference(text: str, start: str, end: str) -> tuple[str, str]:
    """What a reasoning split must give: text between the markers is reasoning."""
    parts: dict[str, list[str]] = {"content": [], "reasoning": []}
    state, i = "content", 0
    while True:
        marker = start if state == "content" else end
        j = text.find(marker, i)
        if j < 0:
            parts[state].append(text[i:])
            return "".join(parts["content"]), "".join(parts["reasoning"])
        parts[state].append(text[i:j])
        i = j + len(marker)
        state = "reasoning" if state == "content" else "content"


def test_reasoning_between_markers_is_split_from_the_answer(
    engine: LLMEngine, demo_models: dict[str, Path]
) -> None:
    """Markers picked from the model's own greedy output, so the real decode
    path produces them, across token boundaries."""
    params = SamplingParams(max_tokens=40, temperature=0)
    engine.submit(ChatJob("plain", HI, params))
    plain = text_of(run_to_end(engine), "plain")
    start, end = plain[4:7], plain[12:14]
    path = demo_models["demo-llama-tiny"]
    thinking = load_engine("demo-llama-tiny", path, reasoning=[start, end])
    thinking.submit(ChatJob("split", HI, params))
    steps = run_to_end(thinking)
    content = text_of(steps, "split")
    reasoning = "".join(d.reasoning for s in steps for d in s.deltas)
    reasoning += finished_of(steps, "split").reasoning
    assert (content, reasoning) == split_reference(plain, start, end)
    assert reasoning  # the case is not vacuous
    usage = finished_of(steps, "split").usage
    assert 0 < usage.reasoning_tokens < usage.completion_tokens


def test_reasoning_off_by_default_for_a_tokenizer_without_markers(engine: LLMEngine) -> None:
    engine.submit(ChatJob("r", HI, SamplingParams(max_tokens=8, temperature=0)))
    steps = run_to_end(engine)
    assert all(not d.reasoning for s in steps for d in s.deltas)


def test_count_only_answers_the_prompt_tokens_without_generating(engine: LLMEngine) -> None:
    messages = [ChatMessage("user", "Count me.")]
    job = ChatJob("count", messages, SamplingParams(max_tokens=8), count_only=True)
    steps = submitted(engine, job) + run_to_end(engine)
    (finished,) = [f for s in steps for f in s.finished]
    expected = len(engine.prompt_tokens(ChatJob("x", messages, SamplingParams())))
    assert finished.usage.prompt_tokens == expected and finished.usage.completion_tokens == 0
    assert not [d for s in steps for d in s.deltas]
    assert finished.context_length == 256  # the fixture's context_length


def test_a_few_shared_tokens_are_not_worth_copying_a_long_cached_sequence(
    engine: LLMEngine,
) -> None:
    """prompt_cache_min_tokens (32): a prompt sharing only its first tokens with
    a long cached sequence prefills from scratch instead of copying that cache."""
    params = SamplingParams(max_tokens=2, temperature=0)
    engine.submit(CompletionJob("long", list(range(300, 400)), params))
    run_to_end(engine)
    engine.submit(CompletionJob("few", [*range(300, 310), *range(500, 560)], params))
    engine.submit(CompletionJob("many", [*range(300, 350), *range(500, 520)], params))
    steps = run_to_end(engine)
    assert finished_of(steps, "few").usage.cached_tokens == 0
    assert finished_of(steps, "many").usage.cached_tokens == 50
