"""Bedrock Converse typed: names and shapes checked against botocore's service model, unions, frames."""

import base64
import json

import botocore.session
import msgspec
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.validate import ParamValidator
from msgspec import Raw

from orqen_common.canonical import TokenUsage
from orqen_common.errors import OrqenError
from orqen_common.formats import bedrock
from orqen_common.formats.bedrock_eventstream import event_frame, exception_frame
from orqen_common.formats.openai import encode

CONVERSE = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse")
PNG = b"\x89PNG\r\n\x1a\n"


def full_request() -> bedrock.ConverseRequest:
    """A request using every member Orqen sends."""
    cache_point = bedrock.CachePointBlock(type="default", ttl="1h")
    return bedrock.ConverseRequest(
        system=[bedrock.SystemContentBlock(text="Be brief."), bedrock.SystemContentBlock(cache_point=cache_point)],
        messages=[
            bedrock.Message(
                role="user",
                content=[
                    bedrock.ContentBlock(text="What is this?"),
                    bedrock.ContentBlock(image=bedrock.ImageBlock(format="png", source=bedrock.ImageSource(data=PNG))),
                ],
            ),
            bedrock.Message(
                role="assistant",
                content=[
                    bedrock.ContentBlock(
                        tool_use=bedrock.ToolUseBlock(tool_use_id="t1", name="look", input={"what": "image"})
                    )
                ],
            ),
            bedrock.Message(
                role="user",
                content=[
                    bedrock.ContentBlock(
                        tool_result=bedrock.ToolResultBlock(
                            tool_use_id="t1", content=[bedrock.ToolResultContentBlock(text="a cat")], status="error"
                        )
                    ),
                    bedrock.ContentBlock(cache_point=cache_point),
                ],
            ),
        ],
        inference_config=bedrock.InferenceConfiguration(
            max_tokens=10, temperature=0.5, top_p=0.9, stop_sequences=["X"]
        ),
        tool_config=bedrock.ToolConfiguration(
            tools=[
                bedrock.Tool(
                    tool_spec=bedrock.ToolSpecification(
                        name="look", input_schema=bedrock.ToolInputSchema(json=Raw(b'{"type":"object"}')), strict=True
                    )
                ),
                bedrock.Tool(cache_point=cache_point),
            ],
            tool_choice=bedrock.ToolChoice(tool=bedrock.SpecificToolChoice(name="look")),
        ),
        additional_model_request_fields={"top_k": 5},
        request_metadata={"user": "u1"},
    )


def test_a_request_encodes_as_botocore_validates_the_converse_input() -> None:
    body = json.loads(encode(full_request()))
    image = body["messages"][0]["content"][1]["image"]
    assert image["source"]["bytes"] == base64.b64encode(PNG).decode()  # JSON carries a blob as base64
    image["source"]["bytes"] = PNG  # botocore's validator wants the bytes the JSON stands for
    report = ParamValidator().validate({**body, "modelId": "m"}, CONVERSE.input_shape)
    assert not report.has_errors(), report.generate_report()
    assert bedrock.decode_request(encode(full_request())) == full_request()


def test_absent_members_are_not_sent() -> None:
    request = bedrock.ConverseRequest(
        messages=[bedrock.Message(role="user", content=[bedrock.ContentBlock(text="hi")])]
    )
    assert json.loads(encode(request)) == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


@pytest.mark.parametrize("block", [{}, {"text": "a", "cachePoint": {"type": "default"}}, {"text": None}])
def test_a_union_holds_exactly_one_member(block: dict[str, object]) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}, block]}]}).encode()
    with pytest.raises(OrqenError) as err:
        bedrock.decode_request(body)
    assert err.value.http_status == 400
    assert "exactly one of `text`, `image`, `toolUse`" in err.value.message
    assert err.value.message.endswith("- at `$.messages[0].content[1]`.")
    with pytest.raises(ValueError):
        bedrock.ContentBlock()


def test_a_union_names_the_member_it_holds() -> None:
    body = b'{"messages": [{"role": "user", "content": [{"document": {"name": "d"}}, {"toolUse": %s}]}]}' % (
        b'{"toolUseId": "t", "name": "f", "input": {}}'
    )
    blocks = bedrock.decode_request(body).messages[0].content
    assert [block.kind for block in blocks] == ["document", "toolUse"]


def test_unknown_request_fields_are_refused_with_their_path() -> None:
    with pytest.raises(OrqenError) as err:
        bedrock.decode_request(
            b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"x": 1}}'
        )
    assert err.value.message.endswith("unknown field `x` - at `$.inferenceConfig`.")


def test_model_fields_name_their_path_in_the_body() -> None:
    assert bedrock.decode_model_fields({"top_k": 3}) == bedrock.ModelFields(top_k=3)
    with pytest.raises(OrqenError) as err:
        bedrock.decode_model_fields({"top_k": 0})
    assert err.value.message.endswith("- at `$.additionalModelRequestFields.top_k`.")


def test_answers_are_read_leniently() -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
                    {"text": "hi"},
                    {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}, "type": "tool_use"}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5, "cacheDetails": []},
        "metrics": {"latencyMs": 4},
        "trace": {},
    }
    response = bedrock.response_decoder.decode(json.dumps(answer))
    blocks = response.output.message.content
    assert blocks[0] == bedrock.OutputBlock()  # no member Orqen translates
    assert blocks[1].text == "hi"
    assert blocks[2].tool_use == bedrock.OutputToolUse(tool_use_id="t", name="f", input={"a": 1})
    assert response.usage.tokens() == TokenUsage(input=3, output=2)


def test_usage_round_trips_and_its_total_counts_the_cache() -> None:
    tokens = TokenUsage(input=32, output=7, cache_read=10, cache_write=3)
    usage = bedrock.Usage.of(tokens)
    assert msgspec.to_builtins(usage) == {
        "inputTokens": 32,
        "outputTokens": 7,
        "totalTokens": 52,
        "cacheReadInputTokens": 10,
        "cacheWriteInputTokens": 3,
    }
    assert usage.tokens() == tokens


def test_stream_events_frame_and_decode_by_their_name() -> None:
    event = bedrock.ContentBlockDeltaEvent(content_block_index=2, delta=bedrock.ContentBlockDelta(text="hi"))
    buffer = EventStreamBuffer()
    buffer.add_data(bedrock.frame(event))
    (message,) = list(buffer)
    assert message.headers[":event-type"] == "contentBlockDelta"
    assert json.loads(message.payload) == {"contentBlockIndex": 2, "delta": {"text": "hi"}}
    assert bedrock.stream_event("contentBlockDelta", message.payload) == event
    assert bedrock.stream_event("somethingNew", b"{}") is None
    with pytest.raises(msgspec.ValidationError):
        bedrock.stream_event("contentBlockStop", b"{}")


def test_event_stream_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(
        event_frame("messageStop", b'{"stopReason":"end_turn"}') + exception_frame("throttlingException", "slow")
    )
    first, second = list(buffer)
    assert first.headers[":event-type"] == "messageStop" and first.payload == b'{"stopReason":"end_turn"}'
    assert second.headers[":message-type"] == "exception" and second.headers[":exception-type"] == "throttlingException"
    assert json.loads(second.payload) == {"message": "slow"}
