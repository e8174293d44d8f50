"""The Anthropic wire types against the official SDK's own: the same type names, and usage both ways."""

import typing

from anthropic.types import ContentBlockParam, RawContentBlockDelta, RawMessageStreamEvent
from pydantic import BaseModel

from orqen_common.canonical import TokenUsage
from orqen_common.formats import anthropic as wire


def sdk_types(union: object) -> set[str]:
    """The `type` values of the members of one of the SDK's unions (TypedDicts or models)."""
    while typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return {value for member in typing.get_args(union) for value in typing.get_args(_type_annotation(member))}


def _type_annotation(member: typing.Any) -> object:
    if isinstance(member, type) and issubclass(member, BaseModel):
        return member.model_fields["type"].annotation
    return typing.get_type_hints(member)["type"]


def declared(union: object) -> set[str]:
    return {str(member.__struct_config__.tag) for member in typing.get_args(union)}


def test_every_content_block_type_of_the_sdk_is_declared_so_a_refusal_names_it() -> None:
    assert sdk_types(ContentBlockParam) <= declared(wire.ContentBlock)


def test_every_stream_event_of_the_sdk_is_read_and_the_deltas_read_are_the_sdks() -> None:
    assert sdk_types(RawMessageStreamEvent) <= declared(wire.StreamEvent)
    assert declared(wire.BlockDelta) <= sdk_types(RawContentBlockDelta)


def test_usage_both_ways() -> None:
    split = TokenUsage(input=5, output=7, cache_read=11, cache_write=13)
    assert wire.Usage.of(split).tokens() == split
    # message_delta: output_tokens is the final count; what it leaves out keeps its value from message_start.
    assert wire.Usage(output_tokens=9).tokens(split) == TokenUsage(input=5, output=9, cache_read=11, cache_write=13)
    assert wire.Usage(input_tokens=3, output_tokens=1).tokens() == TokenUsage(input=3, output=1)
