"""OpenAI and any OpenAI-compatible endpoint: the canonical shape is already its wire format.

Only the canonical extensions need care: those OpenAI cannot express are refused,
the hints are dropped (OpenAI rejects fields it does not know).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Collection
from typing import Any

import msgspec
from msgspec.structs import replace

from orqen_common.canonical import TokenUsage, unsupported
from orqen_common.errors import invalid_request
from orqen_common.formats.openai import (
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    ImagePart,
    Message,
    StreamOptions,
    TextPart,
    Tool,
    ToolMessage,
    chunk_decoder,
    completion_decoder,
    encode_request,
)
from orqen_dispatch.credentials import header_value
from orqen_dispatch.providers import model_lists
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    decode_answer,
    read_body,
    send,
    sse_events,
)
from orqen_dispatch.upstream_http import UpstreamClient, UpstreamRequest, UpstreamResponse

_REFUSED = {"top_k": "top_k", "thinking": "Extended thinking"}


class OpenAICompatible:
    """POST {base_url}/chat/completions with a bearer key, JSON or SSE back.

    The call's credentials (`api_key`, and `base_url` of an account's OpenAI-compatible
    provider) win over the operator's, given here.
    """

    def __init__(
        self,
        name: str,
        client: UpstreamClient,
        base_url: str,
        api_key: str | None,
        proxy_families: Collection[str] | None = None,
    ) -> None:
        """`proxy_families`: the stateless families (orqen_common.proxy_families) it offers; None: all."""
        self.name = name
        self._client = client
        self._base_url = base_url
        self._api_key = api_key
        self._proxy_families = None if proxy_families is None else frozenset(proxy_families)

    def offers(self, family: str) -> bool:
        """Whether the provider serves the proxy family `family` ("embeddings", "audio/speech", ...)."""
        return self._proxy_families is None or family in self._proxy_families

    async def open_proxy(
        self, family: str, content: bytes | AsyncIterable[bytes], content_type: str, credentials: Credentials
    ) -> UpstreamResponse:
        """POST {base_url}/{family} with the call's key; the answer's body is left to stream (close it).

        The body goes as it is, streamed when it is an iterable; an error status is an UpstreamError.
        """
        base_url, headers = self._endpoint(credentials)
        headers["content-type"] = content_type
        return await send(self._client, UpstreamRequest("POST", f"{base_url}/{family}", headers, content), self.name)

    async def list_models(self, credentials: Credentials) -> list[model_lists.ListedModel]:
        """GET {base_url}/models with the call's key: the models this endpoint serves."""
        base_url, headers = self._endpoint(credentials)
        request = UpstreamRequest("GET", f"{base_url}/models", headers)
        body = await read_body(await send(self._client, request, self.name), self.name)
        return model_lists.openai_models(decode_answer(model_lists.openai_list_decoder, body, self.name, "model list"))

    def wire_request(self, chat: ChatRequest, model: str, stream: bool) -> ChatRequest:
        """The body this provider accepts: extensions refused or dropped, the model resolved."""
        for field, feature in _REFUSED.items():
            if getattr(chat, field) is not None:
                raise unsupported(feature, f"the {self.name} provider")
        return replace(
            chat,
            model=model,
            stream=stream,
            # Always ask for usage when streaming: the request log needs it whatever the caller asked.
            stream_options=StreamOptions(include_usage=True) if stream else None,
            anthropic_beta=None,
            tools=[replace(t, cache_control=None) if isinstance(t, Tool) else t for t in chat.tools or ()] or None,
            messages=[_without_hints(m) for m in chat.messages],
        )

    async def complete(self, chat: ChatRequest, model: str, credentials: Credentials) -> Completion:
        body = self.wire_request(chat, model, stream=False)
        response = await send(self._client, self._request(body, credentials), self.name)
        answer = decode_answer(completion_decoder, await read_body(response, self.name), self.name)
        return Completion(body=answer, usage=TokenUsage.from_canonical(answer.usage), status=response.status)

    async def stream(
        self, chat: ChatRequest, model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Yield canonical chunks as they arrive, ending with the usage chunk."""
        body = self.wire_request(chat, model, stream=True)
        response = await send(self._client, self._request(body, credentials), self.name)
        state.status = response.status
        last: ChatCompletionChunk | None = None
        try:
            async for event in sse_events(response, self.name):
                if event.data == "[DONE]":
                    break
                last = self._chunk(event.data)
                if last.usage:
                    state.usage = TokenUsage.from_canonical(last.usage)
                yield last
        finally:
            response.close()
        if last is None or not last.usage:
            # Some OpenAI-compatible servers ignore include_usage; the stream still ends with usage.
            yield ChatCompletionChunk(
                id=last.id if last else "",
                created=last.created if last else int(time.time()),
                model=last.model if last else model,
                choices=[],
                usage=CompletionUsage(),
            )

    def _request(self, body: ChatRequest, credentials: Credentials) -> UpstreamRequest:
        base_url, headers = self._endpoint(credentials)
        headers["content-type"] = "application/json"
        return UpstreamRequest("POST", base_url + "/chat/completions", headers, encode_request(body))

    def _endpoint(self, credentials: Credentials) -> tuple[str, dict[str, str]]:
        """The base URL (no trailing slash) and auth header of a call: the call's credentials first."""
        base_url = credentials.get("base_url") or self._base_url
        if not base_url:
            raise invalid_request(f"The {self.name} provider has no base URL: save a credential for it with one.")
        headers = {}
        api_key = credentials.get("api_key") or self._api_key
        if api_key:
            headers["authorization"] = f"Bearer {header_value(api_key, self.name)}"
        return base_url.rstrip("/"), headers

    def _chunk(self, data: str) -> ChatCompletionChunk:
        try:
            return decode_answer(chunk_decoder, data, self.name, "stream event")
        except UpstreamError:
            # An OpenAI-compatible server reports a failure mid-stream as an event of its own.
            failure = _error_decoder.decode(data) if data.startswith("{") and '"error"' in data else None
            if failure is None:
                raise
            raise UpstreamError(502, failure.message()) from None


class _ErrorEvent(msgspec.Struct):
    error: dict[str, Any] | str

    def message(self) -> str:
        if isinstance(self.error, dict):
            return str(self.error.get("message", self.error))
        return self.error


_error_decoder = msgspec.json.Decoder(_ErrorEvent)


def _without_hints(message: Message) -> Message:
    """The message without the Anthropic-style hints OpenAI would reject: cache_control, is_error."""
    if isinstance(message, ToolMessage) and message.is_error is not None:
        message = replace(message, is_error=None)
    content = message.content
    if isinstance(content, list) and any(getattr(p, "cache_control", None) is not None for p in content):
        parts = [replace(p, cache_control=None) if isinstance(p, TextPart | ImagePart) else p for p in content]
        message = replace(message, content=parts)
    return message
