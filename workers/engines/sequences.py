"""A language-model job as a sequence to decode: everything about one job
that the scheduler does not decide.

:class:`SequenceMaker` (one per loaded model) checks a chat or completion job
and gives its :class:`Sequence`: the prompt's tokens, the token budget, its
sampler and logits processors (bias and penalties, then the grammar of the
JSON schema, or of the calls to "strict" tools) and its text pipeline
(:class:`~workers.engines.text_output.TextOutput`, with its tool-call reader
and where its reasoning starts). Making one changes nothing but the sequence,
so a job that fails here fails alone.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from llguidance import LLTokenizer

from protocol.messages import ChatJob, CompletionJob
from workers.engine import JobError, room_left
from workers.engines.grammar import (
    GrammarError,
    GrammarProcessor,
    compile_json_schema,
    compile_tool_calls,
    grammar_tokenizer,
)
from workers.engines.logprobs import TokenLogprobs
from workers.engines.prompts import ReasoningMarkers, check_token_ids, prompt_tokens
from workers.engines.sampling import (
    LogitsProcessor,
    Sampler,
    request_logits_processors,
    request_sampler,
)
from workers.engines.text_output import TextOutput
from workers.engines.tools import ToolCallReader, ToolFormat, strict_call_schema


@dataclass
class Sequence:
    output: TextOutput
    sampler: Sampler
    processors: list[LogitsProcessor]
    max_tokens: int
    tokens: list[int]  # prompt, then every generated token
    # Structured output or strict tools: the processor masking what the
    # grammar forbids.
    grammar: GrammarProcessor | None = None
    # Set by the scheduler. In the batch: its BatchGenerator uid. Solo: its
    # generate_step and KV cache.
    uid: int | None = None
    solo: Generator[tuple[Any, mx.array], None, None] | None = None
    cache: list[Any] | None = None

    @property
    def job_id(self) -> str:
        return self.output.job_id


@dataclass(kw_only=True)
class SequenceMaker:
    """What one model needs to turn its jobs into sequences (built at load)."""

    tokenizer: Any
    model_name: str
    vocab_size: int | None
    context_length: int
    # The model's max_prompt_tokens (None: only the context limits a prompt).
    max_prompt_tokens: int | None = None
    default_max_tokens: int
    reasoning: ReasoningMarkers | None
    tool_format: ToolFormat | None
    logprobs: TokenLogprobs = field(init=False)
    # llguidance's tokenizer for response_format (~1 s for a big vocabulary).
    grammar_tokenizer: LLTokenizer | None = field(init=False)

    def __post_init__(self) -> None:
        self.logprobs = TokenLogprobs(self.tokenizer)
        eos = sorted(self.tokenizer.eos_token_ids)
        self.grammar_tokenizer = grammar_tokenizer(self.tokenizer, eos)

    def prompt_tokens(self, job: ChatJob | CompletionJob) -> list[int]:
        return prompt_tokens(self.tokenizer, job, model=self.model_name, vocab_size=self.vocab_size)

    def make(self, job: ChatJob | CompletionJob, tokens: list[int]) -> Sequence:
        """``job`` (whose prompt is ``tokens``) as a sequence, or JobError."""
        room = room_left(self.context_length, len(tokens), max_prompt_tokens=self.max_prompt_tokens)
        params = job.params
        check_token_ids(params.logit_bias, self.vocab_size, "'logit_bias' token ids", "logit_bias")
        grammar = self._grammar(params.json_schema)
        tools = self._tools(job, grammar)
        if grammar is None and isinstance(job, ChatJob):
            grammar = self._strict_tools_grammar(job)
        processors = request_logits_processors(params)
        if grammar is not None:
            processors.append(grammar)  # last: no bias or penalty can lift its mask
        reasoning = None
        # Structured output is the answer itself, never reasoning (strict
        # tools' grammar leaves the model its free text, reasoning included).
        if self.reasoning is not None and isinstance(job, ChatJob) and params.json_schema is None:
            reasoning = self.reasoning.reply_state(self.tokenizer, tokens)
        echo = ""
        if params.echo and isinstance(job, CompletionJob):
            prompt = job.prompt
            echo = prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt)
        output = TextOutput(
            job.id,
            prompt_tokens=len(tokens),
            stop=params.stop,
            detokenizer=self.tokenizer.detokenizer,
            reasoning=reasoning,
            tools=tools,
            logprobs=self.logprobs if params.logprobs else None,
            top_logprobs=params.top_logprobs,
            echo=echo,
        )
        return Sequence(
            output=output,
            sampler=request_sampler(params),
            processors=processors,
            max_tokens=min(params.max_tokens or self.default_max_tokens, room),
            tokens=tokens,
            grammar=grammar,
        )

    def _grammar(self, schema: str | None) -> GrammarProcessor | None:
        if schema is None:
            return None
        if self.grammar_tokenizer is None:
            raise JobError(
                f"model {self.model_name!r} cannot constrain its output: its tokenizer "
                "is not a fast (Rust) tokenizer",
                param="response_format",
            )
        try:
            return GrammarProcessor(self.grammar_tokenizer, compile_json_schema(schema))
        except GrammarError as exc:
            raise JobError(f"'response_format': {exc}", param="response_format") from exc

    def _strict_tools_grammar(self, job: ChatJob) -> GrammarProcessor | None:
        """For tool_choice "auto" with "strict" tools: a grammar that lets the
        model write text or calls, whose arguments then validate. Only for
        tool formats whose calls are plain JSON (others are parsed unconstrained)."""
        fmt = self.tool_format
        if job.tool_mode != "auto" or not job.tools or fmt is None or not fmt.json_body:
            return None
        schema = strict_call_schema(job.tools)
        if schema is None or self.grammar_tokenizer is None:
            return None
        try:
            return GrammarProcessor(
                self.grammar_tokenizer, compile_tool_calls(fmt.start, fmt.end, schema)
            )
        except GrammarError as exc:
            raise JobError(f"'tools': {exc}", param="tools") from exc

    def _tools(
        self, job: ChatJob | CompletionJob, grammar: GrammarProcessor | None
    ) -> ToolCallReader | None:
        """For chat with tools: what reads the calls out of the answer."""
        if not isinstance(job, ChatJob) or not job.tools or job.tool_mode == "none":
            return None
        if job.tool_mode == "forced" and grammar is None:
            raise JobError("a forced tool call needs its JSON schema", param="tool_choice")
        if job.tool_mode == "forced" or self.tool_format is not None:
            return ToolCallReader(job.tool_mode, self.tool_format, job.tools)
        return None
