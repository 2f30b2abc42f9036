"""response_format (structured output) through the gateway, with the OpenAI SDK.

The demo models have random weights: whatever they write is JSON that
validates only because decoding is constrained by the schema's grammar.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import openai
import pytest

from tests.e2e.conftest import LLAMA, QWEN

MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
    },
    "required": ["name", "age", "color", "tags"],
    "additionalProperties": False,
}
PERSON = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": SCHEMA, "strict": True},
}


def ask(client: openai.OpenAI, model: str, seed: int, **extra: Any) -> Any:
    kwargs: dict[str, Any] = {"response_format": PERSON, "max_tokens": 200, **extra}
    return client.chat.completions.create(
        model=model, messages=MESSAGES, temperature=1.0, seed=seed, **kwargs
    )


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_json_schema_output_validates_on_20_seeds(client: openai.OpenAI, model: str) -> None:
    # Three at a time (QWEN's max_pending): batched, each with its own mask.
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda seed: ask(client, model, seed), range(20)))
    for reply in replies:
        choice = reply.choices[0]
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
        assert choice.finish_reason == "stop"


@pytest.mark.parametrize("model", [LLAMA, QWEN])
def test_streamed_json_is_the_same_json(client: openai.OpenAI, model: str) -> None:
    for seed in range(3):
        chunks = list(ask(client, model, seed, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        whole = ask(client, model, seed).choices[0]
        assert (text, finish) == (whole.message.content, "stop")
        jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object_output_is_a_json_object(client: openai.OpenAI) -> None:
    """Any object: a random model may write long keys and hit max_tokens
    ("length", as OpenAI); each answer that ends by itself parses."""

    def object_reply(seed: int) -> Any:
        return client.chat.completions.create(
            model=LLAMA,
            messages=MESSAGES,
            max_tokens=300,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_object"},
        ).choices[0]

    with ThreadPoolExecutor(10) as pool:
        choices = list(pool.map(object_reply, range(10)))
    stopped = 0
    for choice in choices:
        assert choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
            stopped += 1
    assert stopped >= 5


def test_max_tokens_cuts_the_json_with_length(client: openai.OpenAI) -> None:
    choice = ask(client, LLAMA, 0, max_tokens=5).choices[0]
    assert choice.finish_reason == "length"
    assert ask(client, LLAMA, 0).choices[0].message.content.startswith(choice.message.content)


def test_text_format_changes_nothing(client: openai.OpenAI) -> None:
    def greedy(**extra: Any) -> str | None:
        return (
            client.chat.completions.create(
                model=LLAMA, messages=MESSAGES, max_tokens=16, temperature=0, **extra
            )
            .choices[0]
            .message.content
        )

    assert greedy(response_format={"type": "text"}) == greedy()


def test_completions_take_response_format_too(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=QWEN,
        prompt="A person:",
        max_tokens=200,
        temperature=1.0,
        seed=4,
        extra_body={"response_format": PERSON},
    )
    jsonschema.validate(json.loads(reply.choices[0].text), SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
        {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"properties": {"a": {"$ref": "#/no"}}}},
        },
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"minLength": "x"}}},
    ],
)
def test_an_invalid_schema_is_a_400_naming_response_format(
    client: openai.OpenAI, response_format: dict[str, Any], stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=LLAMA,
            messages=MESSAGES,
            max_tokens=5,
            response_format=response_format,
            stream=stream,
        )
    assert err.value.status_code == 400
    assert err.value.param == "response_format"


def test_an_unknown_format_type_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=LLAMA,
            messages=MESSAGES,
            max_tokens=5,
            response_format={"type": "yaml"},
        )
    assert (err.value.param or "").startswith("response_format")


def test_a_plain_request_next_to_constrained_ones_keeps_its_greedy_output(
    client: openai.OpenAI,
) -> None:
    """Only the constrained sequences are masked: a greedy request batched
    with them writes what it writes alone."""

    def plain() -> str | None:
        return (
            client.chat.completions.create(
                model=LLAMA, messages=MESSAGES, max_tokens=60, temperature=0
            )
            .choices[0]
            .message.content
        )

    alone = plain()
    with ThreadPoolExecutor(4) as pool:
        constrained = [pool.submit(ask, client, LLAMA, seed) for seed in range(3)]
        together = pool.submit(plain)
        for future in constrained:
            jsonschema.validate(json.loads(future.result().choices[0].message.content), SCHEMA)
        assert together.result() == alone
