"""What the ledger stores of a request's attempts and routing trace: MessageToDict's output, faster."""

from google.protobuf.json_format import MessageToDict

from orqen.v1 import common_pb2, optimizer_pb2
from orqen_accounting.stored_json import from_json, plain_dict, to_json

TRACE = optimizer_pb2.RoutingTrace(
    intent="weather in Paris",
    mode="semantic",
    k=2,
    k_reason="within 0.25",
    candidates=[optimizer_pb2.ToolCandidate(name="get_weather", score=0.91), optimizer_pb2.ToolCandidate(name="x")],
)
ATTEMPT = common_pb2.Attempt(provider="openai", model="gpt-4o", status=500, error="boom", duration_ms=12.5)


def test_stored_messages_are_what_message_to_dict_gives_and_read_back_whole() -> None:
    for message in (TRACE, ATTEMPT, optimizer_pb2.RoutingTrace()):
        assert plain_dict(message) == MessageToDict(message, preserving_proto_field_name=True)
        assert from_json(to_json(plain_dict(message)), type(message)()) == message
