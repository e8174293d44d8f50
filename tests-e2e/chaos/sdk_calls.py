"""One chat request through each official SDK, as an application makes it, and what it got back.

The fault runs judge every answer the same way whatever the SDK: the whole answer, or an
error in the SDK's own shape with, for a stream, the text that came before the error. Each
request carries its own `x-request-id`, so it can be found in the request log however it ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import boto3
import openai
from botocore.config import Config
from botocore.exceptions import ClientError

SDKS = ("openai", "anthropic", "bedrock")


@dataclass(frozen=True)
class Outcome:
    """What one request got, as its client saw it."""

    request_id: str
    sdk: str
    stream: bool
    expected: str  # the scenario's answer to the question
    text: str  # the text the client received (for a failed stream: before the error)
    seconds: float  # from the call until its answer or its error
    error: str | None = None  # the exception's class, None when the call returned
    # Whether the error is the SDK's own API error, as Orqen's errors must be (not a broken
    # connection or an unparsable body).
    sdk_shaped: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None and self.text == self.expected

    @property
    def coherent(self) -> bool:
        """One answer or the start of one: never two answers spliced, never one twice."""
        return self.text == self.expected if self.error is None else self.expected.startswith(self.text)


class SdkClients:
    """The three SDK clients of one API key; safe to call from many threads at once."""

    def __init__(self, edge_url: str, tls_url: str, cert_path: Path, api_key: str, pool: int) -> None:
        self._openai = openai.OpenAI(base_url=edge_url + "/v1", api_key=api_key, max_retries=0, timeout=120)
        self._anthropic = anthropic.Anthropic(base_url=edge_url, api_key=api_key, max_retries=0, timeout=120)
        # botocore reads the Bedrock API key from AWS_BEARER_TOKEN_BEDROCK: the caller sets it.
        self._bedrock = boto3.client(
            "bedrock-runtime",
            endpoint_url=tls_url,
            region_name="us-east-1",
            verify=str(cert_path),
            config=Config(retries={"max_attempts": 1}, max_pool_connections=pool, read_timeout=120),
        )
        self._request_id = threading.local()
        self._bedrock.meta.events.register("before-sign.bedrock-runtime.*", self._add_request_id)

    def ask(self, sdk: str, model: str, question: str, stream: bool, request_id: str) -> Outcome:
        """Ask `question` of `model` through `sdk`; the scenario answers "echo: <question>"."""
        call: Callable[[str, str, bool, str, list[str]], None] = {
            "openai": self._ask_openai,
            "anthropic": self._ask_anthropic,
            "bedrock": self._ask_bedrock,
        }[sdk]
        received: list[str] = []
        started = time.monotonic()

        def outcome(error: Exception | None = None, sdk_shaped: bool = True) -> Outcome:
            text, seconds = "".join(received), time.monotonic() - started
            error_name = None if error is None else type(error).__name__
            return Outcome(request_id, sdk, stream, "echo: " + question, text, seconds, error_name, sdk_shaped)

        try:
            call(model, question, stream, request_id, received)
        except (openai.APIError, anthropic.APIError, ClientError) as err:
            return outcome(err, not isinstance(err, (openai.APIConnectionError, anthropic.APIConnectionError)))
        except Exception as err:  # anything else is not an error in the SDK's shape
            return outcome(err, sdk_shaped=False)
        return outcome()

    def _ask_openai(self, model: str, question: str, stream: bool, request_id: str, received: list[str]) -> None:
        messages: Any = [{"role": "user", "content": question}]
        headers = {"x-request-id": request_id}
        if not stream:
            reply = self._openai.chat.completions.create(model=model, messages=messages, extra_headers=headers)
            received.append(reply.choices[0].message.content or "")
            return
        chunks = self._openai.chat.completions.create(
            model=model, messages=messages, stream=True, extra_headers=headers
        )
        for chunk in chunks:
            received += [choice.delta.content or "" for choice in chunk.choices]

    def _ask_anthropic(self, model: str, question: str, stream: bool, request_id: str, received: list[str]) -> None:
        messages: Any = [{"role": "user", "content": question}]
        headers = {"x-request-id": request_id}
        if not stream:
            message = self._anthropic.messages.create(
                model=model, max_tokens=200, messages=messages, extra_headers=headers
            )
            received += [block.text for block in message.content if block.type == "text"]
            return
        events = self._anthropic.messages.create(
            model=model, max_tokens=200, messages=messages, stream=True, extra_headers=headers
        )
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)

    def _ask_bedrock(self, model: str, question: str, stream: bool, request_id: str, received: list[str]) -> None:
        # `bedrock/<id>` addresses a native Bedrock model; in the Bedrock SDK that is just <id>.
        messages = [{"role": "user", "content": [{"text": question}]}]
        kwargs: Any = {"modelId": model.removeprefix("bedrock/"), "messages": messages}
        self._request_id.value = request_id
        if not stream:
            answer = self._bedrock.converse(**kwargs)
            received += [block.get("text", "") for block in answer["output"]["message"]["content"]]
            return
        for event in self._bedrock.converse_stream(**kwargs)["stream"]:
            if "contentBlockDelta" in event:
                received.append(event["contentBlockDelta"]["delta"].get("text", ""))

    def _add_request_id(self, request: Any, **_: Any) -> None:
        request.headers["x-request-id"] = self._request_id.value
