"""One sequence's text on its way out: tokens in, the job's events out.

Each token goes through mlx-lm's streaming detokenizer (correct UTF-8 across
token boundaries), the stop-string matcher (text that may start a stop string
is held back until the next piece decides it), the reasoning split (mlx-lm's
``TextStateMachine`` on the model's markers, which vanish) and the tool-call
reader (calls taken out of the answer). What the sequence gained waits, with
its logprobs, until the engine takes it as one :class:`Delta` per step; the
last of it goes out in the :class:`Finished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import TextStateMachine

from protocol.messages import Delta, Finished, FinishReason, TokenLogprob, Usage
from workers.engines.logprobs import TokenLogprobs
from workers.engines.stops import StopStringMatcher
from workers.engines.tools import ToolCallReader


@dataclass(frozen=True)
class Accepted:
    """What one token (or piece of text) did to its sequence."""

    # The sequence's first visible text came with it (a step may return early).
    first_text: bool
    # The sequence ended: its last event, for the engine to send.
    finished: Finished | None = None

    @property
    def ended(self) -> bool:
        return self.finished is not None


class TextOutput:
    """The text pipeline of one sequence of job ``job_id``.

    ``detokenizer`` (mlx-lm's, fresh) turns tokens into text for
    :meth:`accept`; without one, text decoded elsewhere comes through
    :meth:`accept_text`. ``reasoning`` is a ``TextStateMachine`` state (see
    :class:`~workers.engines.prompts.ReasoningMarkers`), None to keep all text
    in the answer. ``logprobs`` reads the logprobs of each token (with the
    ``top_logprobs`` likeliest alternatives), None when they were not asked for.
    """

    def __init__(
        self,
        job_id: str,
        *,
        prompt_tokens: int,
        cached_tokens: int = 0,
        stop: list[str] | None = None,
        detokenizer: Any = None,
        reasoning: Any = None,
        tools: ToolCallReader | None = None,
        logprobs: TokenLogprobs | None = None,
        top_logprobs: int = 0,
        echo: str = "",
    ) -> None:
        self.job_id = job_id
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        self.completion_tokens = 0
        # Those read inside the reasoning markers (or crossing one).
        self.reasoning_tokens = 0
        self._stops = StopStringMatcher(stop or [])
        self._detokenizer = detokenizer
        self._reasoning = reasoning
        self._tools = tools
        self._logprob_of = logprobs
        self._top = top_logprobs
        self._sent_text = False
        # What was gained since the last Delta; the prompt first, if echoed.
        self._text: list[str] = [echo] if echo else []
        self._reasoning_text: list[str] = []
        self._tokens = 0
        self._logprobs: list[TokenLogprob] | None = [] if logprobs is not None else None

    def accept(
        self, token: int, logprobs: mx.array, finish_reason: FinishReason | None
    ) -> Accepted:
        """One generated token; ``finish_reason`` "stop" means it is EOS (no text)."""
        detokenizer = self._detokenizer
        assert detokenizer is not None, "a sequence without a detokenizer takes text"
        if finish_reason != "stop":
            detokenizer.add_token(token)
            if self._logprobs is not None and self._logprob_of is not None:
                self._logprobs.append(self._logprob_of(token, logprobs, self._top))
        if finish_reason is not None:
            detokenizer.finalize()
        return self.accept_text(detokenizer.last_segment, 1, finish_reason)

    def accept_text(self, text: str, tokens: int, finish_reason: FinishReason | None) -> Accepted:
        """``text`` decoded from ``tokens`` new tokens (none: a detokenizer's
        last flush); with a ``finish_reason``, the sequence's end."""
        self.completion_tokens += tokens
        self._tokens += tokens
        text, hit_stop = self._stops.feed(text)
        first_text = bool(text) and not self._sent_text
        self._sent_text |= first_text
        if hit_stop:
            finish_reason = "stop"
        elif finish_reason is not None:
            text += self._stops.flush()
        was_reasoning = self._in_reasoning
        self._route(text, end=finish_reason is not None)
        if was_reasoning or self._in_reasoning:
            self.reasoning_tokens += tokens
        if finish_reason is None:
            return Accepted(first_text)
        return Accepted(first_text, self._finished(finish_reason))

    @property
    def _in_reasoning(self) -> bool:
        return self._reasoning is not None and self._reasoning[0] == "reasoning"

    def _route(self, text: str, *, end: bool) -> None:
        """Text to the answer or the reasoning (the markers themselves vanish);
        the answer's tool calls (if it may have any) are taken out of it."""
        if self._reasoning is None:
            segments = [("normal", text)]
        else:
            self._reasoning, segments = TextStateMachine.split(self._reasoning, text)
            if end:  # a marker's possible start held back is plain text after all
                self._reasoning, held, state = TextStateMachine.flush(self._reasoning)
                segments.append((state, held))
        answer = []
        for state, part in segments:
            if state == "reasoning":
                self._reasoning_text.append(part)
            else:
                answer.append(part)
        content = "".join(answer)
        if self._tools is not None:
            content = self._tools.feed(content, end=end)
        self._text.append(content)

    def delta(self) -> Delta | None:
        """What the sequence gained since the last Delta, if any token came."""
        if not self._tokens:
            return None
        tokens, self._tokens = self._tokens, 0
        return Delta(
            self.job_id,
            self._take_text(),
            tokens,
            self._take_logprobs(),
            self._take_reasoning(),
            self._tools.take() if self._tools is not None else [],
        )

    def _finished(self, reason: FinishReason) -> Finished:
        """The last event: it carries what no Delta took."""
        self._tokens = 0
        calls = self._tools.take() if self._tools is not None else []
        if self._tools is not None and self._tools.calls and reason == "stop":
            reason = "tool_calls"
        return Finished(
            id=self.job_id,
            finish_reason=reason,
            usage=Usage(
                self.prompt_tokens,
                self.completion_tokens,
                self.cached_tokens,
                self.reasoning_tokens,
            ),
            text=self._take_text(),
            logprobs=self._take_logprobs(),
            stop_sequence=self._stops.matched,
            reasoning=self._take_reasoning(),
            tool_calls=calls,
        )

    def _take_text(self) -> str:
        return _drained(self._text)

    def _take_reasoning(self) -> str:
        return _drained(self._reasoning_text)

    def _take_logprobs(self) -> list[TokenLogprob] | None:
        if self._logprobs is None:
            return None
        taken, self._logprobs = self._logprobs, []
        return taken


def _drained(parts: list[str]) -> str:
    text = "".join(parts)
    parts.clear()
    return text
