"""The chat routes authenticate their caller before anything else, as when it was a Litestar dependency."""

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_edge.errors import handle_http_exception, handle_orqen_error
from orqen_edge.ingress import anthropic, bedrock, openai


class KnowsNoKey:
    """A runtime for which no key is valid."""

    async def authenticate(self, token: str) -> Principal | None:
        return None


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        route_handlers=[openai.chat_completions, anthropic.create_message, bedrock.converse],
        state=State({"runtime": KnowsNoKey()}),
        exception_handlers={OrqenError: handle_orqen_error, HTTPException: handle_http_exception},
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/v1/chat/completions", lambda body: body["error"]["message"]),
        ("/v1/messages", lambda body: body["error"]["message"]),
        ("/model/m/converse", lambda body: body["message"]),
        # Not an operation the route serves: still the 401 first, as before.
        ("/model/m/invoke", lambda body: body["message"]),
    ],
)
@pytest.mark.parametrize("key", [None, "sk-orq-unknown"])
def test_a_chat_route_answers_401_in_its_sdks_shape_before_reading_anything(
    client: TestClient[Litestar], path: str, error: object, key: str | None
) -> None:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    answer = client.post(path, content=b"not even JSON", headers=headers)
    assert answer.status_code == 401
    assert ("Invalid API key." if key else "Missing API key") in error(answer.json())  # type: ignore[operator]
