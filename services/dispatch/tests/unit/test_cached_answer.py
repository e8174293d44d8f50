"""The cache's two shapes of an answer: a stream folds into the completion it amounts to, and back."""

from __future__ import annotations

import pytest

from orqen.v1 import dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import (
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
    decode_request,
    encode,
)
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.cache_use import cache_use
from orqen_dispatch.cached_answer import (
    StreamFold,
    cached_answer,
    canonical_usage,
    entry_decoder,
    entry_encoder,
    replay_chunks,
)
from orqen_dispatch.resilience import Target
from orqen_dispatch.response_cache import cache_key

USAGE = TokenUsage(input=30, output=7, cache_read=10, cache_write=2)
ACCOUNT = "00000000-0000-0000-0000-00000000c0de"


def completion_with_tools() -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-original",
        created=1700000000,
        model="gpt-4o-mini",
        choices=[
            Choice(
                message=AnswerMessage(
                    content="Looking it up.",
                    tool_calls=[
                        ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}')),
                        ToolCall(id="call_2", function=FunctionCall(name="get_time", arguments='{"tz": "CET"}')),
                    ],
                ),
                finish_reason="tool_calls",
            )
        ],
        usage=canonical_usage(USAGE),
    )


def fold(chunks: list[ChatCompletionChunk]) -> ChatCompletion | None:
    folding = StreamFold()
    for chunk in chunks:
        folding.add(chunk)
    return folding.completion()


def test_a_replayed_completion_folds_back_into_the_same_completion() -> None:
    original = completion_with_tools()
    chunks = replay_chunks(original, USAGE)
    assert chunks[-1].choices == [] and chunks[-1].usage == canonical_usage(USAGE)  # the canonical stream's end
    assert encode(fold(chunks)) == encode(original)


def test_a_provider_stream_in_pieces_folds_into_text_and_whole_tool_calls() -> None:
    def chunk(delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id="c", created=1, model="m", choices=[ChunkChoice(delta=delta, finish_reason=finish)]
        )

    call_start = ToolCallDelta(
        index=0, id="call_9", type="function", function=FunctionCallDelta(name="f", arguments="")
    )
    chunks = [
        chunk(Delta(role="assistant", content="Hel")),
        chunk(Delta(content="lo")),
        chunk(Delta(tool_calls=[call_start])),
        chunk(Delta(tool_calls=[ToolCallDelta(index=0, function=FunctionCallDelta(arguments='{"a":'))])),
        chunk(Delta(tool_calls=[ToolCallDelta(index=0, function=FunctionCallDelta(arguments=" 1}"))])),
        chunk(Delta(), "tool_calls"),
    ]
    folded = fold(chunks)
    assert folded is not None
    [choice] = folded.choices
    assert choice.message.content == "Hello"
    assert choice.message.tool_calls == [ToolCall(id="call_9", function=FunctionCall(name="f", arguments='{"a": 1}'))]
    assert choice.finish_reason == "tool_calls"


def test_a_stream_that_never_finished_is_not_an_answer_to_keep() -> None:
    unfinished = ChatCompletionChunk(id="c", created=1, model="m", choices=[ChunkChoice(delta=Delta(content="Hal"))])
    assert fold([unfinished]) is None
    assert fold([]) is None


def test_an_entry_round_trips_and_a_hit_gets_a_fresh_id_with_the_original_usage() -> None:
    entry = cached_answer("openai", "gpt-4o-mini", USAGE, completion_with_tools())
    stored = entry_encoder.encode(entry)
    back = entry_decoder.decode(stored)
    assert back.token_usage() == USAGE and back.provider == "openai"
    fresh = back.fresh()
    assert fresh.id != "chatcmpl-original" and fresh.id.startswith("chatcmpl-")
    assert fresh.usage == canonical_usage(USAGE) and fresh.choices == entry.completion.choices


def chat(body: str) -> object:
    return decode_request(body.encode())


def test_the_key_ignores_what_does_not_change_the_answer_and_keeps_what_does() -> None:
    base = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]'
    plain = cache_key(ACCOUNT, "openai:gpt-4o", chat(base + "}"))  # type: ignore[arg-type]
    streamed = chat(base + ', "stream": true, "stream_options": {"include_usage": true}, "user": "u1"}')
    assert cache_key(ACCOUNT, "openai:gpt-4o", streamed) == plain  # type: ignore[arg-type]
    hotter = chat(base + ', "temperature": 0.9}')
    assert cache_key(ACCOUNT, "openai:gpt-4o", hotter) != plain  # type: ignore[arg-type]
    assert cache_key(ACCOUNT, "openai:gpt-4o-mini", chat(base + "}")) != plain  # type: ignore[arg-type]
    other_account = cache_key("00000000-0000-0000-0000-0000000000b2", "openai:gpt-4o", chat(base + "}"))  # type: ignore[arg-type]
    assert other_account.digest == plain.digest and other_account.entry != plain.entry


class _Provider:
    name = "openai"


def _use(cache: str = "", ttl: int = 0, enabled: bool = False) -> object:
    request = dispatch_pb2.CompleteRequest(cache=cache, cache_ttl_seconds=ttl)
    config = AccountConfig({}, cache_enabled=enabled, cache_ttl_seconds=600)
    target = Target(_Provider(), "gpt-4o", {}, "requested", "gpt-4o")  # type: ignore[arg-type]
    return cache_use(request, ACCOUNT, config, chat('{"model": "gpt-4o", "messages": []}'), target)  # type: ignore[arg-type]


def test_the_request_header_wins_over_the_account_setting() -> None:
    assert _use() is None  # off by default
    assert _use(enabled=True).mode == "use"  # type: ignore[attr-defined]
    assert _use("skip", enabled=True) is None
    assert _use("use").ttl_seconds == 600  # type: ignore[attr-defined]
    assert _use("refresh", ttl=30).ttl_seconds == 30  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cache", "ttl"), [("sometimes", 0), ("use", -1), ("use", 7 * 24 * 3600 + 1)])
def test_a_cache_mode_or_ttl_dispatch_does_not_know_is_refused(cache: str, ttl: int) -> None:
    with pytest.raises(OrqenError) as refused:
        _use(cache, ttl)
    assert refused.value.http_status == 400
