"""Request bodies that are not valid JSON text are a 400, never an unexpected error."""

from collections.abc import Callable
from typing import Any

import pytest

from orqen_common.errors import OrqenError
from orqen_common.formats import bedrock, openai


@pytest.mark.parametrize(
    ("decode_request", "body"),
    [
        (openai.decode_request, b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
        (bedrock.decode_request, b'{"messages": [{"role": "user", "content": [{"text": "\xc3"}]}]}'),
    ],
    ids=["openai", "bedrock"],
)
def test_invalid_utf8_in_a_string_is_a_400(decode_request: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(OrqenError) as raised:
        decode_request(body)
    assert raised.value.http_status == 400 and "invalid UTF-8" in raised.value.message
