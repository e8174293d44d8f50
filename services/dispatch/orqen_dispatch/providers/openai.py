"""OpenAI and any OpenAI-compatible endpoint: the canonical shape is already its wire format.

Only the canonical extensions need care: those OpenAI cannot express are refused,
the hints are dropped (OpenAI rejects fields it does not know).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Collection
from typing import Any

import httpx
import orjson

from orqen_common.canonical import unsupported
from orqen_common.errors import invalid_request
from orqen_dispatch.credentials import header_value
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    UpstreamUsage,
    read_json,
    send,
    sse_events,
)

_REFUSED = {"top_k": "top_k", "thinking": "Extended thinking"}
_HINTS = ("anthropic_beta",)


def usage_of(body: dict[str, Any]) -> UpstreamUsage:
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return UpstreamUsage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0),
    )


class OpenAICompatible:
    """POST {base_url}/chat/completions with a bearer key, JSON or SSE back.

    The call's credentials (`api_key`, and `base_url` of an account's OpenAI-compatible
    provider) win over the operator's, given here.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
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
    ) -> httpx.Response:
        """POST {base_url}/{family} with the call's key; the answer's body is left to stream (close it).

        The body goes as it is, streamed when it is an iterable; an error status is an UpstreamError.
        """
        base_url, headers = self._endpoint(credentials)
        headers["content-type"] = content_type
        request = self._client.build_request("POST", f"{base_url}/{family}", content=content, headers=headers)
        return await send(self._client, request, self.name)

    def wire_request(self, chat: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
        """The body this provider accepts: extensions refused or dropped, the model resolved."""
        for field, feature in _REFUSED.items():
            if chat.get(field) is not None:
                raise unsupported(feature, f"the {self.name} provider")
        body = {k: v for k, v in chat.items() if k not in _HINTS}
        body["model"], body["stream"] = model, stream
        if stream:
            # Always ask for usage: the request log needs it whatever the caller asked.
            body["stream_options"] = {**(chat.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        if "tools" in body:
            body["tools"] = [_without_cache_control(t) for t in body["tools"]]
        body["messages"] = [_message_without_cache_control(m) for m in body["messages"]]
        return body

    async def complete(self, chat: dict[str, Any], model: str, credentials: Credentials) -> Completion:
        body = self.wire_request(chat, model, stream=False)
        response = await send(self._client, self._request(body, credentials), self.name)
        answer = await read_json(response, self.name)
        return Completion(body=answer, usage=usage_of(answer), status=response.status_code)

    async def stream(
        self, chat: dict[str, Any], model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield canonical chunks as they arrive, ending with the usage chunk."""
        body = self.wire_request(chat, model, stream=True)
        response = await send(self._client, self._request(body, credentials), self.name)
        state.status = response.status_code
        last: dict[str, Any] = {}
        try:
            async for event in sse_events(response, self.name):
                if event.data == "[DONE]":
                    break
                chunk = self._chunk(event.data)
                last = chunk
                if chunk.get("usage"):
                    state.usage = usage_of(chunk)
                yield chunk
        finally:
            await response.aclose()
        if not last.get("usage"):
            # Some OpenAI-compatible servers ignore include_usage; the stream still ends with usage.
            yield {
                "id": last.get("id", ""),
                "object": "chat.completion.chunk",
                "created": last.get("created", int(time.time())),
                "model": last.get("model", model),
                "choices": [],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }

    def _request(self, body: dict[str, Any], credentials: Credentials) -> httpx.Request:
        base_url, headers = self._endpoint(credentials)
        headers["content-type"] = "application/json"
        url = base_url + "/chat/completions"
        return self._client.build_request("POST", url, content=orjson.dumps(body), headers=headers)

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

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise UpstreamError(502, f"{self.name} sent a stream event that is not JSON") from err
        if not isinstance(payload, dict):
            raise UpstreamError(502, f"{self.name} sent a stream event that is not an object")
        if "error" in payload and "choices" not in payload:
            err_body = payload["error"]
            message = err_body.get("message", str(err_body)) if isinstance(err_body, dict) else str(err_body)
            raise UpstreamError(502, message)
        return payload


def _without_cache_control(item: Any) -> Any:
    if isinstance(item, dict) and "cache_control" in item:
        return {k: v for k, v in item.items() if k != "cache_control"}
    return item


def _message_without_cache_control(message: dict[str, Any]) -> dict[str, Any]:
    """The message without Anthropic-style hints OpenAI would reject: cache_control, is_error."""
    message = {k: v for k, v in message.items() if k != "is_error"}
    content = message.get("content")
    if isinstance(content, list) and any(isinstance(p, dict) and "cache_control" in p for p in content):
        return {**message, "content": [_without_cache_control(p) for p in content]}
    return message
