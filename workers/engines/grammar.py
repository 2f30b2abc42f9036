"""Structured output: constrained decoding of a JSON schema with llguidance.

Each sequence that asks for ``response_format`` gets an ``LLMatcher`` and a
logits processor that masks every token the grammar does not allow next to
-inf, so even a random-weight model writes JSON that validates. Once the JSON
is complete the grammar allows nothing but EOS, which ends the sequence with
finish reason "stop". Sequences without a grammar get no processor at all
(mlx-lm samples the batch in one call when no row has processors). Chat with
"strict" tools under tool_choice "auto" gets a grammar too (for models whose
calls are JSON between markers): free text, and calls whose arguments validate.

An object schema that lists its ``properties`` (or ``patternProperties``)
and does not say ``additionalProperties`` gets ``additionalProperties:
false`` before it is compiled, at every depth: as in OpenAI's strict mode and
xgrammar's strict default, constrained output has the keys the schema names
and no others (JSON Schema itself would allow any extra key, and a model then
invents some, often running to ``max_tokens`` inside one). An explicit
``true`` or a schema there is honoured, as is ``unevaluatedProperties``. The
exception is the schemas a multi-schema ``allOf`` intersects (and the
``$ref`` targets among them): closing each would forbid the others' keys.
llguidance has no option for this (its ``x-guidance`` options are about
whitespace, separators and escapes).

llguidance's own MLX helper applies the mask with a Metal kernel; here the
bitmask goes through numpy and ``mx.where``, which works on every backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mlx.core as mx
import numpy as np
from llguidance import LLMatcher, LLTokenizer
from llguidance.hf import from_tokenizer

# Compact JSON, as json.dumps writes it: no free whitespace (a model could
# otherwise pad forever), ", " and ": " between items. A schema's own
# "x-guidance" options override these.
JSON_OPTIONS: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    """The schema cannot be compiled into a grammar."""


def grammar_tokenizer(tokenizer: Any, eos_token_ids: list[int]) -> LLTokenizer | None:
    """llguidance's view of the model's tokenizer (built once, at load); None
    when the tokenizer is not a fast (Rust) one, which llguidance needs."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    try:
        return from_tokenizer(hf, eos_token=eos_token_ids)
    except Exception:  # ValueError for slow tokenizers; anything else it cannot read
        return None


def compile_json_schema(schema: str) -> str:
    """The llguidance grammar for a JSON schema (its text), or GrammarError.
    Whether the schema itself is valid shows when a matcher is built from it."""
    try:
        parsed = json.loads(schema)
        closed = close_objects(parsed)
        return LLMatcher.grammar_from_json_schema(closed, defaults=JSON_OPTIONS)
    except RecursionError as exc:
        raise GrammarError("the JSON schema is nested too deeply") from exc
    except ValueError as exc:
        raise GrammarError(f"the JSON schema is not a JSON object: {exc}") from exc


# Where a schema keeps its subschemas: one, a list of them, or a name -> schema map.
_ONE = (
    "additionalProperties",
    "unevaluatedProperties",
    "items",  # a list in drafts before 2020-12: see _MANY
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def close_objects(schema: Any) -> Any:
    """``schema`` (parsed JSON, changed in place) with ``additionalProperties:
    false`` wherever an object schema lists its keys and leaves it unsaid."""
    intersected: set[str] = set()
    _find_intersected(schema, "#", intersected)
    _close(schema, "#", intersected)
    return schema


def _close(schema: Any, path: str, intersected: set[str]) -> None:
    if not isinstance(schema, dict):
        return
    lists_keys = "properties" in schema or "patternProperties" in schema
    unsaid = "additionalProperties" not in schema and "unevaluatedProperties" not in schema
    if lists_keys and unsaid and path not in intersected:
        schema["additionalProperties"] = False
    for child, child_path in _subschemas(schema, path):
        _close(child, child_path, intersected)


def _find_intersected(schema: Any, path: str, found: set[str]) -> None:
    """The JSON pointers of the schemas a multi-schema allOf intersects,
    and the local ``$ref`` targets among them."""
    if not isinstance(schema, dict):
        return
    members = schema.get("allOf")
    if isinstance(members, list) and len(members) > 1:
        for i, member in enumerate(members):
            found.add(f"{path}/allOf/{i}")
            ref = member.get("$ref") if isinstance(member, dict) else None
            if isinstance(ref, str) and ref.startswith("#"):
                found.add(ref)
    for child, child_path in _subschemas(schema, path):
        _find_intersected(child, child_path, found)


def _subschemas(schema: dict[str, Any], path: str) -> Iterator[tuple[Any, str]]:
    """Each subschema of ``schema`` with its JSON pointer (not ``enum``,
    ``const`` or ``default`` values: those are data)."""
    for key in _ONE:
        if isinstance(schema.get(key), dict):
            yield schema[key], f"{path}/{key}"
    for key in _MANY:
        if isinstance(schema.get(key), list):
            for i, child in enumerate(schema[key]):
                yield child, f"{path}/{key}/{i}"
    for key in _NAMED:
        if isinstance(schema.get(key), dict):
            for name, child in schema[key].items():
                yield child, f"{path}/{key}/{_pointer_token(name)}"


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _regex_literal(text: str) -> str:
    """``text`` as a literal in an llguidance (Rust-syntax) regex."""
    return "".join(
        "\\" + ch if ch.isascii() and not ch.isalnum() and ch not in "<> _" else ch for ch in text
    )


def compile_tool_calls(start: str, end: str, call_schema: dict[str, Any]) -> str:
    """The llguidance grammar of a reply that may make tool calls: free text
    (never containing ``start``), then any number of calls, each ``start``,
    a JSON ``call_schema`` instance (``{"name", "arguments"}``), ``end``, and
    free text after it. "Strict" tools' arguments then validate as forced
    calls' do (closed as :func:`close_objects` closes them), while the
    model still chooses whether to call at all."""
    marker = _regex_literal(start)
    try:
        # A copy: the job's tools themselves stay as the client sent them.
        schema = {**close_objects(json.loads(json.dumps(call_schema))), "x-guidance": JSON_OPTIONS}
        # LEAD: text up to and with the first start marker; PLAIN: text with none.
        lark = (
            f"start: (LEAD WS? body WS? {json.dumps(end)})* PLAIN\n"
            f"PLAIN: /(.|\\n)*/ & ~/(.|\\n)*{marker}(.|\\n)*/\n"
            f"LEAD: /(.|\\n)*{marker}/ & ~/(.|\\n)*{marker}(.|\\n)+/\n"
            "WS: /[ \\t\\n]+/\n"
            f"body: %json {json.dumps(schema)}\n"
        )
        return LLMatcher.grammar_from_lark(lark)
    except RecursionError as exc:
        raise GrammarError("a tool's parameters are nested too deeply") from exc
    except ValueError as exc:
        raise GrammarError(f"the tools' schemas make no grammar: {exc}") from exc


class GrammarProcessor:
    """An mlx-lm logits processor ``(tokens, logits) -> logits`` for one sequence.

    ``tokens`` is the sequence's context, ending with the token being fed now
    (the last one sampled). Only the tokens past those already seen are new;
    the first call (and the first after :meth:`resync`) sees the prompt, or a
    context whose last token the matcher has already consumed.
    """

    def __init__(self, tokenizer: LLTokenizer, grammar: str) -> None:
        # Never raises: a bad schema leaves the matcher in its error state.
        self.matcher = LLMatcher(tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise GrammarError(f"invalid JSON schema: {self.matcher.get_error()}")
        self._seen: int | None = None
        self._vocab = tokenizer.vocab_size
        self._bitmask = np.zeros((self._vocab + 31) // 32, dtype=np.int32)
        self._allowed: np.ndarray | None = None  # reused bool row of the logits' width

    def resync(self) -> None:
        """The next call's context is new (another generator) but its last
        token is one the matcher has consumed already: count from there."""
        self._seen = None

    @property
    def failed(self) -> str | None:
        """Why the matcher broke (a token it did not allow got through), if it did."""
        return self.matcher.get_error() if self.matcher.is_error() else None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        n = tokens.size
        if self._seen is not None and n > self._seen:
            new: list[int] = tokens.reshape(-1)[self._seen :].tolist()  # type: ignore[assignment]
            # A refused token leaves the matcher in its error state, whose mask
            # allows only EOS: the sequence ends rather than runs unconstrained.
            self.matcher.consume_tokens(new)
        self._seen = n
        v = self._bitmask
        self.matcher.unsafe_compute_mask_ptr(v.ctypes.data, v.nbytes)
        bits = np.unpackbits(v.view(np.uint8), bitorder="little")
        width = logits.shape[-1]
        allowed = self._allowed
        if allowed is None or allowed.size != width:
            allowed = self._allowed = np.zeros(width, dtype=bool)
        k = min(width, self._vocab)
        allowed[:k] = bits[:k]
        return mx.where(mx.array(allowed), logits, -mx.inf)
