"""An answer as the response cache keeps it, and its two shapes: a completion and a stream.

The cache stores the canonical completion. A streamed answer is folded into one
(`StreamFold`) before it is stored, and a cached answer to a streaming request is replayed
as canonical chunks (`replay_chunks`), which each ingress encodes as it encodes any stream.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import msgspec
from msgspec import UNSET

from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import (
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    PromptTokensDetails,
    ToolCall,
    ToolCallDelta,
)


class CachedAnswer(msgspec.Struct, array_like=True):
    """One cache entry: who answered, what it cost (usage) and the answer; stored as a compact JSON array."""

    provider: str
    model: str
    usage: tuple[int, int, int, int]  # TokenUsage: input, output, cache_read, cache_write
    completion: ChatCompletion

    def token_usage(self) -> TokenUsage:
        return TokenUsage(*self.usage)

    def fresh(self) -> ChatCompletion:
        """The cached completion with a new id and creation time: a hit is a new answer to the caller."""
        return msgspec.structs.replace(self.completion, id=new_completion_id(), created=int(time.time()))


def cached_answer(provider: str, model: str, usage: TokenUsage, completion: ChatCompletion) -> CachedAnswer:
    return CachedAnswer(provider, model, (usage.input, usage.output, usage.cache_read, usage.cache_write), completion)


entry_encoder = msgspec.json.Encoder()
entry_decoder = msgspec.json.Decoder(CachedAnswer)


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def replay_chunks(completion: ChatCompletion, usage: TokenUsage) -> list[ChatCompletionChunk]:
    """A completion as a canonical stream: per choice its text, its tool calls and its finish, then usage."""

    def chunk(choices: list[ChunkChoice], usage: CompletionUsage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=choices,
            usage=usage if usage is not None else UNSET,
        )

    chunks: list[ChatCompletionChunk] = []
    for choice in completion.choices:
        message = choice.message
        first = Delta(role="assistant")
        if message.content:  # an answer of tool calls alone starts no text block in any format
            first.content = message.content
        if message.reasoning_content:
            first.reasoning_content = message.reasoning_content
        if message.reasoning:
            first.reasoning = message.reasoning
        chunks.append(chunk([ChunkChoice(index=choice.index, delta=first)]))
        for position, call in enumerate(message.tool_calls or ()):
            delta = ToolCallDelta(
                index=position,
                id=call.id,
                type="function",
                function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
            )
            chunks.append(chunk([ChunkChoice(index=choice.index, delta=Delta(tool_calls=[delta]))]))
        finish = ChunkChoice(index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)
        if choice.stop_sequence is not UNSET:
            finish.stop_sequence = choice.stop_sequence
        chunks.append(chunk([finish]))
    chunks.append(chunk([], canonical_usage(usage)))
    return chunks


def canonical_usage(usage: TokenUsage) -> CompletionUsage:
    details = PromptTokensDetails(cached_tokens=usage.cache_read)
    if usage.cache_write:
        details.cache_creation_tokens = usage.cache_write
    return CompletionUsage(
        prompt_tokens=usage.prompt,
        completion_tokens=usage.output,
        total_tokens=usage.prompt + usage.output,
        prompt_tokens_details=details,
    )


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _ChoiceParts:
    content: list[str] = field(default_factory=list)
    reasoning_content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    finish_reason: str | None = None
    stop_sequence: str | msgspec.UnsetType | None = UNSET


class StreamFold:
    """Folds a canonical stream, chunk by chunk, into the completion it amounts to."""

    def __init__(self) -> None:
        self._first: ChatCompletionChunk | None = None
        self._choices: dict[int, _ChoiceParts] = {}
        self._usage: CompletionUsage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        if self._first is None:
            self._first = chunk
        if isinstance(chunk.usage, CompletionUsage):
            self._usage = chunk.usage
        for choice in chunk.choices:
            parts = self._choices.setdefault(choice.index, _ChoiceParts())
            delta = choice.delta
            for text, into in (
                (delta.content, parts.content),
                (delta.reasoning_content, parts.reasoning_content),
                (delta.reasoning, parts.reasoning),
            ):
                if isinstance(text, str):
                    into.append(text)
            for call in delta.tool_calls or ():
                call_parts = parts.tool_calls.setdefault(call.index, _ToolCallParts())
                call_parts.id = call.id if isinstance(call.id, str) and call.id else call_parts.id
                if call.function:
                    if isinstance(call.function.name, str) and call.function.name:
                        call_parts.name = call.function.name
                    if isinstance(call.function.arguments, str):
                        call_parts.arguments.append(call.function.arguments)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
                parts.stop_sequence = choice.stop_sequence

    def completion(self) -> ChatCompletion | None:
        """The whole answer; None when the stream carried no choice or did not finish every one."""
        if self._first is None or not self._choices or any(p.finish_reason is None for p in self._choices.values()):
            return None
        return ChatCompletion(
            id=self._first.id,
            created=self._first.created,
            model=self._first.model,
            choices=[self._choice(index, parts) for index, parts in sorted(self._choices.items())],
            usage=self._usage if self._usage is not None else UNSET,
        )

    @staticmethod
    def _choice(index: int, parts: _ChoiceParts) -> Choice:
        message = AnswerMessage(content="".join(parts.content) or None)
        if parts.tool_calls:
            message.tool_calls = [
                ToolCall(id=call.id, function=FunctionCall(name=call.name, arguments="".join(call.arguments)))
                for _, call in sorted(parts.tool_calls.items())
            ]
        if parts.reasoning_content:
            message.reasoning_content = "".join(parts.reasoning_content)
        if parts.reasoning:
            message.reasoning = "".join(parts.reasoning)
        return Choice(
            index=index, message=message, finish_reason=parts.finish_reason, stop_sequence=parts.stop_sequence
        )
