"""response_format in the LLM engine: JSON-schema constrained decoding with
llguidance, solo, batched, and across the solo -> batch move."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from llguidance import LLMatcher

from protocol.messages import ChatJob, ChatMessage, CompletionJob, Events, SamplingParams
from tests.workers.engine_helpers import load_engine, run_to_end, text_of
from workers.engine import JobError
from workers.engines.grammar import close_objects, compile_json_schema, grammar_tokenizer
from workers.engines.llm import LLMEngine

HI = [ChatMessage("user", "Describe a person as JSON.")]

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
    },
    "required": ["name", "age", "color", "tags"],
    "additionalProperties": False,
}
SCHEMA_TEXT = json.dumps(SCHEMA)


@pytest.fixture(scope="module")
def engine(demo_models: dict[str, Path]) -> LLMEngine:
    return load_engine("demo-llama-tiny", demo_models["demo-llama-tiny"], context_length=1024)


def reason_of(steps: list[Events], job_id: str) -> str:
    (done,) = [f for s in steps for f in s.finished if f.id == job_id]
    return done.finish_reason


def structured(seed: int, **extra: object) -> SamplingParams:
    fields: dict[str, object] = {"max_tokens": 200, "temperature": 1.0, "seed": seed}
    return SamplingParams(json_schema=SCHEMA_TEXT, **{**fields, **extra})


def test_solo_output_validates_and_ends_with_eos(engine: LLMEngine) -> None:
    for seed in range(8):
        engine.submit(ChatJob(f"s{seed}", HI, structured(seed)))
        steps = run_to_end(engine)
        jsonschema.validate(json.loads(text_of(steps, f"s{seed}")), SCHEMA)
        assert reason_of(steps, f"s{seed}") == "stop"


def test_batched_outputs_validate_and_a_plain_neighbour_is_unchanged(engine: LLMEngine) -> None:
    plain = SamplingParams(max_tokens=40, temperature=0)
    engine.submit(ChatJob("alone", HI, plain))
    alone = text_of(run_to_end(engine), "alone")

    engine.submit(ChatJob("plain", HI, plain))
    for seed in range(4):
        engine.submit(ChatJob(f"g{seed}", HI, structured(seed)))
    assert engine._solo is None and len(engine._batched) == 5
    steps = run_to_end(engine)
    assert text_of(steps, "plain") == alone
    for seed in range(4):
        jsonschema.validate(json.loads(text_of(steps, f"g{seed}")), SCHEMA)
        assert reason_of(steps, f"g{seed}") == "stop"


def test_batched_output_is_the_solo_output(engine: LLMEngine) -> None:
    """The mask is the same on both paths: a seeded constrained job writes the
    same JSON alone (solo) as next to another job (batch)."""
    engine.submit(ChatJob("solo", HI, structured(3)))
    solo = text_of(run_to_end(engine), "solo")
    engine.submit(ChatJob("batched", HI, structured(3)))
    engine.submit(ChatJob("other", HI, SamplingParams(max_tokens=60, temperature=0)))
    assert engine._solo is None
    assert text_of(run_to_end(engine), "batched") == solo


@pytest.mark.parametrize("solo_tokens", [0, 1, 5, 12])
def test_a_constrained_solo_sequence_moves_into_the_batch_mid_json(
    engine: LLMEngine, solo_tokens: int
) -> None:
    """generate_step has already fed the last token to the matcher (and the
    prompt there is only its uncached part); the batch feeds it again with
    the whole prompt as context. The matcher must neither consume it twice
    nor miss one: the JSON is the one the sequence writes alone."""
    params = structured(7)
    engine.submit(CompletionJob("ref", "A person:", params))
    alone = text_of(run_to_end(engine), "ref")
    jsonschema.validate(json.loads(alone), SCHEMA)

    engine.submit(CompletionJob("moved", "A person:", params))
    steps = [engine.step(0.0) for _ in range(solo_tokens)]
    assert engine._solo is not None
    engine.submit(CompletionJob("other", "Hi", SamplingParams(max_tokens=30, temperature=0)))
    assert engine._solo is None
    steps += run_to_end(engine)
    assert text_of(steps, "moved") == alone
    (done,) = [f for s in steps for f in s.finished if f.id == "moved"]
    assert done.usage.cached_tokens > 0  # the solo context was the uncached part only
    assert done.finish_reason == "stop"


def test_max_tokens_cuts_the_json_with_length(engine: LLMEngine) -> None:
    engine.submit(ChatJob("full", HI, structured(1)))
    full = text_of(run_to_end(engine), "full")
    engine.submit(ChatJob("cut", HI, structured(1, max_tokens=6)))
    steps = run_to_end(engine)
    assert reason_of(steps, "cut") == "length"
    cut = text_of(steps, "cut")
    assert full.startswith(cut) and cut != full


def test_json_object_outputs_are_objects(engine: LLMEngine) -> None:
    """Any JSON object: a random model may write long keys, so some runs hit
    max_tokens; every one that ends by itself parses as an object."""
    for seed in range(8):
        params = SamplingParams(
            max_tokens=300, temperature=1.0, seed=seed, json_schema='{"type": "object"}'
        )
        engine.submit(ChatJob(f"o{seed}", HI, params))
    steps = run_to_end(engine)
    stopped = 0
    for seed in range(8):
        text = text_of(steps, f"o{seed}")
        assert text.startswith("{")
        if reason_of(steps, f"o{seed}") == "stop":
            assert isinstance(json.loads(text), dict)
            stopped += 1
    assert stopped >= 4


def test_logprobs_list_no_masked_alternatives(engine: LLMEngine) -> None:
    params = SamplingParams(
        max_tokens=200,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
        json_schema=json.dumps({"enum": ["red", "green", "blue"]}),
    )
    engine.submit(ChatJob("lp", HI, params))
    steps = run_to_end(engine)
    assert json.loads(text_of(steps, "lp")) in ["red", "green", "blue"]
    tokens = [t for s in steps for d in s.deltas if d.logprobs for t in d.logprobs]
    tokens += [t for s in steps for f in s.finished if f.logprobs for t in f.logprobs]
    assert tokens
    for t in tokens:
        assert all(a.logprob > float("-inf") for a in t.top)
    assert any(len(t.top) < 5 for t in tokens)  # the mask left fewer than 5 choices


@pytest.mark.parametrize(
    "schema",
    [
        '{"type": "nope"}',
        '{"type": "object", "properties": {"a": {"$ref": "#/missing"}}}',
        '{"type": "string", "minLength": "x"}',
        "[1, 2]",
        "not json",
        '{"not": ' * 5000 + "{}" + "}" * 5000,  # nested too deeply
    ],
)
def test_an_invalid_schema_is_refused_naming_response_format(
    engine: LLMEngine, schema: str
) -> None:
    with pytest.raises(JobError) as err:
        engine.submit(ChatJob("bad", HI, SamplingParams(max_tokens=5, json_schema=schema)))
    assert err.value.param == "response_format" and err.value.status == 400
    assert not engine.has_work()
    engine.submit(ChatJob("fine", HI, SamplingParams(max_tokens=3, temperature=0)))
    assert reason_of(run_to_end(engine), "fine") == "length"


# Says nothing about additionalProperties, as langchain's bind_tools schemas
# and many response_format schemas do.
UNSAID = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "pets": {
            "type": "array",
            "items": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}},
            "maxItems": 2,
        },
        "home": {"$ref": "#/$defs/Place"},
    },
    "required": ["name"],
    "$defs": {
        "Place": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6}}}
    },
}


def test_an_object_schema_without_additional_properties_gets_only_its_own_keys(
    engine: LLMEngine,
) -> None:
    """As in OpenAI's strict mode: for constrained decoding an unsaid
    additionalProperties is false, at every depth. (Open, the demo model
    invents keys, and often runs to max_tokens inside one.)"""
    schema = json.dumps(UNSAID)
    for seed in range(20):
        params = SamplingParams(max_tokens=200, temperature=1.0, seed=seed, json_schema=schema)
        engine.submit(ChatJob(f"k{seed}", HI, params))
    steps = run_to_end(engine)
    for seed in range(20):
        assert reason_of(steps, f"k{seed}") == "stop"
        answer = json.loads(text_of(steps, f"k{seed}"))
        assert set(answer) <= {"name", "pets", "home"}
        assert all(set(pet) <= {"kind"} for pet in answer.get("pets", []))
        assert set(answer.get("home", {})) <= {"city"}


def accepts(engine: LLMEngine, schema: dict[str, object], text: str) -> bool:
    """Whether the grammar compiled from ``schema`` lets the model write ``text``."""
    tokenizer = grammar_tokenizer(engine.tokenizer, list(engine.tokenizer.eos_token_ids))
    assert tokenizer is not None
    matcher = LLMatcher(tokenizer, compile_json_schema(json.dumps(schema)), log_level=0)
    return matcher.consume_tokens(tokenizer.tokenize_str(text)) and matcher.is_accepting()


def test_additional_properties_said_outright_are_honoured(engine: LLMEngine) -> None:
    named = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert accepts(engine, named, '{"a": 1}')
    assert not accepts(engine, named, '{"a": 1, "zz": 2}')
    assert accepts(engine, {**named, "additionalProperties": True}, '{"a": 1, "zz": 2}')
    typed = {**named, "additionalProperties": {"type": "integer"}}
    assert accepts(engine, typed, '{"a": 1, "zz": 2}')
    assert not accepts(engine, typed, '{"a": 1, "zz": "x"}')
    # No keys listed (json_object's schema among them): any object, as before.
    assert accepts(engine, {"type": "object"}, '{"zz": [1]}')


def test_schemas_an_all_of_intersects_stay_open(engine: LLMEngine) -> None:
    """Closing each part of an allOf would forbid the other parts' keys."""
    schema = {
        "allOf": [
            {"$ref": "#/$defs/Base"},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ],
        "$defs": {
            "Base": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
        },
    }
    assert accepts(engine, schema, '{"a": 1, "b": 2}')


def test_only_schemas_are_closed_not_the_data_in_them() -> None:
    data = {"properties": {"x": {}}}
    schema = {
        "properties": {"a": {"default": data, "enum": [data], "const": data, "examples": [data]}},
        "x-guidance": {"lenient": True},
    }
    closed = close_objects(json.loads(json.dumps(schema)))
    assert closed == {**schema, "additionalProperties": False}
