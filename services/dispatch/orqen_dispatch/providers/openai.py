"""OpenAI and any OpenAI-compatible endpoint: the canonical shape is already its wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from orqen_dispatch.providers.base import (
    Completion,
    StreamState,
    UpstreamError,
    UpstreamUsage,
    error_message,
    retry_after,
)


def usage_of(body: dict[str, Any]) -> UpstreamUsage:
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return UpstreamUsage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0),
    )


class OpenAICompatible:
    """POST {base_url}/chat/completions with a bearer key, JSON or SSE back."""

    def __init__(self, name: str, client: httpx.AsyncClient, base_url: str, api_key: str | None) -> None:
        self.name = name
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    async def complete(self, chat: dict[str, Any], model: str) -> Completion:
        body = {**chat, "model": model, "stream": False}
        body.pop("stream_options", None)
        try:
            response = await self._client.post(self._url, content=orjson.dumps(body), headers=self._headers)
        except httpx.TimeoutException as err:
            raise UpstreamError(504, f"{self.name} did not answer in time") from err
        except httpx.TransportError as err:
            raise UpstreamError(502, f"{self.name} is unreachable: {err.__class__.__name__}") from err
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, error_message(response), retry_after(response))
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError as err:
            raise UpstreamError(502, f"{self.name} returned a body that is not JSON") from err
        return Completion(body=answer, usage=usage_of(answer), status=response.status_code)

    async def stream(self, chat: dict[str, Any], model: str, state: StreamState) -> AsyncIterator[dict[str, Any]]:
        """Yield canonical chunks as they arrive.

        Usage is always requested upstream so the request log is exact; the usage-only
        chunk is passed on only when the caller asked for it (stream_options.include_usage).
        """
        caller_wants_usage = bool((chat.get("stream_options") or {}).get("include_usage"))
        body = {**chat, "model": model, "stream": True, "stream_options": {"include_usage": True}}
        request = self._client.build_request("POST", self._url, content=orjson.dumps(body), headers=self._headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as err:
            raise UpstreamError(504, f"{self.name} did not answer in time") from err
        except httpx.TransportError as err:
            raise UpstreamError(502, f"{self.name} is unreachable: {err.__class__.__name__}") from err
        try:
            state.status = response.status_code
            if response.status_code >= 400:
                await response.aread()
                raise UpstreamError(response.status_code, error_message(response), retry_after(response))
            async for chunk in _sse_json(response, self.name):
                if chunk.get("usage"):
                    state.usage = usage_of(chunk)
                    if not chunk.get("choices") and not caller_wants_usage:
                        continue
                    if not caller_wants_usage:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                yield chunk
        except httpx.TransportError as err:
            raise UpstreamError(502, f"{self.name} stream broke: {err.__class__.__name__}") from err
        finally:
            await response.aclose()


async def _sse_json(response: httpx.Response, provider: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an SSE body, up to `data: [DONE]`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise UpstreamError(502, f"{provider} sent a stream event that is not JSON") from err
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            err_body = payload["error"]
            message = err_body.get("message", str(err_body)) if isinstance(err_body, dict) else str(err_body)
            raise UpstreamError(502, message)
        yield payload
