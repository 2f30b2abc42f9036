"""Tool calls in a chat job's output: parsed (``auto``) or forced (``forced``).

``auto``: the text between the model's tool-call markers (mlx-lm's tool
parser for its family: ``<tool_call>``/``</tool_call>`` for Qwen-style JSON
calls and so on) is held back from the content and parsed into calls with
the same parser mlx-lm's server uses. ``forced``: the whole output is one
call as JSON ``{"name": ..., "arguments": {...}}``, already constrained by a
grammar to be valid. Its head (``{"name": "...", "arguments": ``, compact
JSON as the grammar writes it) makes the call as soon as it is complete, and
the argument text then streams as more of the same call: a :class:`ToolCall`
whose id was already handed out continues that call (its ``arguments`` are
the next piece of text). ``auto`` with "strict" tools is also constrained
when the calls are plain JSON: :func:`strict_call_schema` is what a call
must match (see :func:`~workers.engines.grammar.compile_tool_calls`).
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlx_lm.generate import TextStateMachine

from protocol.messages import ToolCall

Parser = Callable[[str, Any], Any]

# How a forced call starts, in the grammar's compact JSON.
_FORCED_HEAD = re.compile(r'\{"name": ("(?:[^"\\]|\\.)*"), "arguments": ')


@dataclass(frozen=True)
class ToolFormat:
    """How one model family writes calls: its markers and mlx-lm's parser."""

    start: str
    end: str
    parse: Parser

    @classmethod
    def named(cls, name: str) -> ToolFormat:
        """mlx-lm's ``mlx_lm.tool_parsers.<name>`` (a ``tool_parser`` option)."""
        if not name.isidentifier():
            raise ValueError(f"unknown tool parser {name!r}")
        try:
            module = importlib.import_module(f"mlx_lm.tool_parsers.{name}")
        except ImportError as exc:
            raise ValueError(f"unknown tool parser {name!r}") from exc
        return cls(module.tool_call_start, module.tool_call_end, module.parse_tool_call)

    @property
    def json_body(self) -> bool:
        """Whether a call between the markers is plain JSON ``{"name", "arguments"}``
        (mlx-lm's json_tools: Qwen, Hermes...), which a grammar can constrain."""
        return getattr(self.parse, "__module__", "") == "mlx_lm.tool_parsers.json_tools"

    @classmethod
    def of_tokenizer(cls, tokenizer: Any) -> ToolFormat | None:
        """The format mlx-lm inferred from the tokenizer / chat template."""
        if not getattr(tokenizer, "has_tool_calling", False) or tokenizer.tool_parser is None:
            return None
        return cls(tokenizer.tool_call_start, tokenizer.tool_call_end, tokenizer.tool_parser)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call(parsed: Any) -> ToolCall:
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        raise ValueError("a tool call needs a name")
    arguments = parsed.get("arguments", {})
    if isinstance(arguments, str):  # some parsers keep the JSON text
        arguments = json.loads(arguments)
    if not isinstance(arguments, dict):
        raise ValueError("tool call arguments must be a JSON object")
    text = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=parsed.get("id") or new_call_id(), name=parsed["name"], arguments=text)


def parse_calls(fmt: ToolFormat, text: str, tools: Any) -> list[ToolCall]:
    """The calls in one marked span; ValueError when it does not parse."""
    try:
        parsed = fmt.parse(text, tools)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(str(exc)) from exc
    return [_call(p) for p in (parsed if isinstance(parsed, list) else [parsed])]


def strict_call_schema(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The JSON schema of one call to any of ``tools`` when some are "strict"
    (their arguments must validate; the others' are any object), else None."""
    functions = [t.get("function", {}) for t in tools]
    if not any(f.get("strict") for f in functions):
        return None
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f["name"]},
                "arguments": (f.get("parameters") or {"type": "object"})
                if f.get("strict")
                else {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def forced_call(text: str) -> ToolCall:
    """The call a grammar-forced output spells out (``{"name", "arguments"}``)."""
    return _call(json.loads(text))


@dataclass
class ToolCallReader:
    """Splits one sequence's content text into plain text and tool calls."""

    mode: str  # "auto" or "forced"
    fmt: ToolFormat | None
    tools: Any
    calls: list[ToolCall] = field(default_factory=list)
    _state: Any = None
    _span: list[str] = field(default_factory=list)
    _sent: int = 0  # calls already handed out
    # Forced: the call made from the head, where its arguments start, and how
    # much of them was handed out.
    _head: ToolCall | None = None
    _args_at: int = 0
    _args_sent: int = 0

    def __post_init__(self) -> None:
        if self.mode == "auto" and self.fmt is not None:
            machine = TextStateMachine(
                {"normal": [(self.fmt.start, "tool")], "tool": [(self.fmt.end, "normal")]}
            )
            self._state = machine.make_state("normal")

    def feed(self, text: str, *, end: bool) -> str:
        """The plain text of ``text``; the calls completed go to :attr:`calls`."""
        if self.mode == "forced":
            return self._feed_forced(text, end=end)
        if self._state is None:
            return text
        self._state, segments = TextStateMachine.split(self._state, text)
        if end:
            self._state, held, state = TextStateMachine.flush(self._state)
            segments.append((state, held))
        plain: list[str] = []
        for state, part in segments:
            if state != "tool":
                if self._span:  # the end marker closed a span
                    plain.append(self._close())
                plain.append(part)
            else:
                self._span.append(part)
        if end and self._span:  # never closed: parse what is there (or give it back)
            plain.append(self._close())
        return "".join(plain)

    def _feed_forced(self, text: str, *, end: bool) -> str:
        self._span.append(text)
        whole = "".join(self._span)
        if len(self._span) > 1:
            self._span[:] = [whole]
        if self._head is None:
            head = _FORCED_HEAD.match(whole)
            if head is not None:
                self._head = ToolCall(new_call_id(), json.loads(head.group(1)), "")
                self.calls.append(self._head)
                self._args_at = head.end()
            elif not end:
                return ""
            else:  # another layout than the grammar's usual one: read it whole
                try:
                    self.calls.append(forced_call(whole))
                except ValueError:  # cut short (max_tokens): not a call, give the text
                    return whole
                return ""
        args = whole[self._args_at :]
        if not end:
            stop = len(args) - 1  # hold back what may be the closing "}" of the call
        else:
            try:
                json.loads(whole)
                stop = len(args) - 1  # complete: that last "}" closes the call
            except ValueError:
                stop = len(args)  # cut short: the arguments so far
        piece = args[self._args_sent : stop]
        if piece:
            self.calls.append(ToolCall(self._head.id, self._head.name, piece))
            self._args_sent += len(piece)
        return ""

    def _close(self) -> str:
        assert self.fmt is not None
        text = "".join(self._span)
        self._span.clear()
        try:
            self.calls.extend(parse_calls(self.fmt, text, self.tools))
        except ValueError:
            return self.fmt.start + text  # not a call after all: keep it as content
        return ""

    def take(self) -> list[ToolCall]:
        """The calls not handed out yet."""
        new = self.calls[self._sent :]
        self._sent = len(self.calls)
        return new
