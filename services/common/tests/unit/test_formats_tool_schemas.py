"""Tool schemas stay the caller's JSON text through the canonical shape (formats.openai.JsonObject),
and are still refused, as before, when they are not JSON objects."""

from typing import Any

import orjson
import pytest
from msgspec import UNSET, Raw

from orqen_common.errors import OrqenError
from orqen_common.formats import bedrock
from orqen_common.formats.openai import EMPTY_PARAMETERS, ChatRequest, decode_request, encode_request, schema_or_empty

HI = {"role": "user", "content": "hi"}
NOT_OBJECTS = [("s", "str"), ([1], "array"), (5, "int"), (5.5, "float"), (True, "bool")]


def openai_body(schema: Any) -> bytes:
    tools = [{"type": "function", "function": {"name": name, "parameters": schema}} for name in ("ok", "bad")]
    tools[0]["function"]["parameters"] = {"type": "object"}
    return orjson.dumps({"model": "m", "messages": [HI], "tools": tools})


def converse_body(schema: Any) -> bytes:
    tools = [{"toolSpec": {"name": name, "inputSchema": {"json": schema}}} for name in ("ok", "bad")]
    tools[0]["toolSpec"]["inputSchema"]["json"] = {"type": "object"}
    return orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "toolConfig": {"tools": tools}})


@pytest.mark.parametrize(("schema", "got"), NOT_OBJECTS)
def test_a_canonical_tool_schema_that_is_not_an_object_is_a_400_naming_it(schema: Any, got: str) -> None:
    with pytest.raises(OrqenError) as err:
        decode_request(openai_body(schema))
    assert err.value.http_status == 400
    assert err.value.message == (
        f"The request body is not valid: Expected `object | null`, got `{got}` - at `$.tools[1].function.parameters`."
    )


@pytest.mark.parametrize(("schema", "got"), NOT_OBJECTS)
def test_a_converse_tool_schema_that_is_not_an_object_is_a_400_naming_it(schema: Any, got: str) -> None:
    with pytest.raises(OrqenError) as err:
        bedrock.decode_request(converse_body(schema))
    assert err.value.http_status == 400
    assert err.value.message == (
        "The request body is not valid: "
        f"Expected `object | null`, got `{got}` - at `$.toolConfig.tools[1].toolSpec.inputSchema.json`."
    )


def test_a_null_schema_is_no_schema() -> None:
    request = decode_request(openai_body(None))
    assert request.tools and request.tools[1].function.parameters is UNSET  # type: ignore[union-attr]
    assert orjson.loads(encode_request(request))["tools"][1] == {"type": "function", "function": {"name": "bad"}}
    # A Converse union holding only null holds nothing, as Bedrock says.
    with pytest.raises(OrqenError) as err:
        bedrock.decode_request(converse_body(None))
    assert "exactly one of `json` - at `$.toolConfig.tools[1].toolSpec.inputSchema`" in err.value.message


def test_a_schema_goes_on_as_the_caller_wrote_it() -> None:
    schema = b'{ "type" : "object", "properties": {"q": {"type": "string", "description": "caf\\u00e9"}} }'
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
    body += b'"function": {"name": "f", "parameters": ' + schema + b"}}]}"
    assert schema in encode_request(decode_request(body))
    converse = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}], "toolConfig": {"tools": ['
    converse += b'{"toolSpec": {"name": "f", "inputSchema": {"json": ' + schema + b"}}}]}}"
    spec = bedrock.decode_request(converse).tool_config.tools[0].tool_spec  # type: ignore[union-attr]
    assert spec is not None and bytes(memoryview(spec.input_schema.json)) == schema  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (UNSET, EMPTY_PARAMETERS),
        (Raw(b"{}"), EMPTY_PARAMETERS),
        (Raw(b"{ \n }"), EMPTY_PARAMETERS),
        (Raw(b'{"type":"object"}'), Raw(b'{"type":"object"}')),
    ],
)
def test_providers_that_require_a_schema_get_an_empty_object_one_for_none_or_an_empty_one(
    schema: Raw, expected: Raw
) -> None:
    assert schema_or_empty(schema) == expected


@pytest.mark.parametrize(
    ("extra", "sent_on"),
    [
        ({}, {}),
        ({"prediction": {"type": "content"}}, {"prediction": {"type": "content"}}),
        ({"x-orqen-passthrough": {"verbosity": "low"}}, {"verbosity": "low"}),
    ],
    ids=["named fields only", "a field to pass through", "passthrough sent as such"],
)
def test_a_request_decodes_to_a_chat_request_with_its_unnamed_fields_passed_through(
    extra: dict[str, Any], sent_on: dict[str, Any]
) -> None:
    named = {"model": "m", "messages": [HI], "tools": [{"type": "function", "function": {"name": "f"}}]}
    request = decode_request(orjson.dumps({**named, **extra}))
    assert type(request) is ChatRequest  # never the one-pass decoder's own type
    assert orjson.loads(encode_request(request)) == {**named, **sent_on}
