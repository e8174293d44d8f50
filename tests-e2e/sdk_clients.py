"""The three official SDKs behind one small interface, so the matrix tests read as a table.

A conversation is written once in a neutral form (`Turn`s); each adapter sends it in its
SDK's own shape (streaming or not) and normalises what the SDK returns into a `Result`.
Nothing here interprets Orqen: it is exactly what an application would write.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import boto3
import openai
from botocore.config import Config


@dataclass
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass
class Turn:
    """One message: a user's text (and images), an assistant's answer, or tool results."""

    role: str  # "user" | "assistant" | "tool_results"
    text: str = ""
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (media type, bytes)
    image_urls: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    results: list[tuple[str, str]] = field(default_factory=list)  # (tool call id, content)


@dataclass
class Ask:
    model: str
    turns: list[Turn]
    system: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "description", "schema"}
    tool_choice: str | None = None  # "auto" | "required" | "tool:<name>"
    max_tokens: int = 200
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # extra HTTP headers, e.g. X-Orqen-Session-Id


@dataclass
class Result:
    text: str
    tool_calls: list[ToolCall]
    finish: str  # "stop" | "stop_sequence" | "length" | "tool"
    usage: tuple[int, int, int]  # (all prompt tokens, output tokens, cache-read tokens)
    model: str


class SDK(Protocol):
    name: str

    def ask(self, ask: Ask) -> Result: ...


# --- OpenAI -----------------------------------------------------------------------------


class OpenAISDK:
    name = "openai"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)

    def ask(self, ask: Ask) -> Result:
        kwargs: dict[str, Any] = {"model": ask.model, "messages": self._messages(ask), "max_tokens": ask.max_tokens}
        if ask.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t["name"], "description": t["description"], "parameters": t["schema"]},
                }
                for t in ask.tools
            ]
        if ask.tool_choice:
            kwargs["tool_choice"] = (
                {"type": "function", "function": {"name": ask.tool_choice[5:]}}
                if ask.tool_choice.startswith("tool:")
                else ask.tool_choice
            )
        for name in ("temperature", "top_p"):
            if getattr(ask, name) is not None:
                kwargs[name] = getattr(ask, name)
        if ask.stop:
            kwargs["stop"] = ask.stop
        if ask.headers:
            kwargs["extra_headers"] = ask.headers
        if not ask.stream:
            completion = self.client.chat.completions.create(**kwargs)
            choice = completion.choices[0]
            calls = [
                ToolCall(c.id, c.function.name, json.loads(c.function.arguments))
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
            return Result(
                choice.message.content or "",
                calls,
                _OPENAI_FINISH[choice.finish_reason],
                _openai_usage(completion.usage),
                completion.model,
            )
        text, finish, usage, model = "", "", (0, 0, 0), ""
        partial: dict[int, dict[str, str]] = {}
        for chunk in self.client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):
            model = chunk.model or model
            if chunk.usage:
                usage = _openai_usage(chunk.usage)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for delta in choice.delta.tool_calls or []:
                    slot = partial.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += delta.id or ""
                    if delta.function:
                        slot["name"] += delta.function.name or ""
                        slot["arguments"] += delta.function.arguments or ""
                if choice.finish_reason:
                    finish = _OPENAI_FINISH[choice.finish_reason]
        calls = [ToolCall(s["id"], s["name"], json.loads(s["arguments"])) for _, s in sorted(partial.items())]
        return Result(text, calls, finish, usage, model)

    def _messages(self, ask: Ask) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"role": "system", "content": ask.system}] if ask.system else []
        for turn in ask.turns:
            if turn.role == "user":
                parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
                for media, data in turn.images:
                    url = f"data:{media};base64,{base64.b64encode(data).decode()}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                parts += [{"type": "image_url", "image_url": {"url": u}} for u in turn.image_urls]
                out.append({"role": "user", "content": parts if len(parts) > 1 else turn.text})
            elif turn.role == "assistant":
                message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
                if turn.tool_calls:
                    message["tool_calls"] = [
                        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.input)}}
                        for c in turn.tool_calls
                    ]
                out.append(message)
            else:
                out += [{"role": "tool", "tool_call_id": i, "content": content} for i, content in turn.results]
        return out


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool", "content_filter": "content_filter"}


def _openai_usage(usage: Any) -> tuple[int, int, int]:
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    return usage.prompt_tokens, usage.completion_tokens, cached or 0


# --- Anthropic --------------------------------------------------------------------------


class AnthropicSDK:
    name = "anthropic"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)

    def ask(self, ask: Ask) -> Result:
        kwargs: dict[str, Any] = {"model": ask.model, "messages": self._messages(ask), "max_tokens": ask.max_tokens}
        if ask.system:
            kwargs["system"] = ask.system
        if ask.tools:
            kwargs["tools"] = [
                {"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in ask.tools
            ]
        if ask.tool_choice:
            kwargs["tool_choice"] = (
                {"type": "tool", "name": ask.tool_choice[5:]}
                if ask.tool_choice.startswith("tool:")
                else {"type": {"required": "any"}.get(ask.tool_choice, ask.tool_choice)}
            )
        # Anthropic SDK 1.0 dropped the sampling parameters from its signatures; the API still takes them.
        sampling = {name: getattr(ask, name) for name in ("temperature", "top_p") if getattr(ask, name) is not None}
        if sampling:
            kwargs["extra_body"] = sampling
        if ask.stop:
            kwargs["stop_sequences"] = ask.stop
        if ask.headers:
            kwargs["extra_headers"] = ask.headers
        if ask.stream:
            with self.client.messages.stream(**kwargs) as stream:
                message = stream.get_final_message()
        else:
            message = self.client.messages.create(**kwargs)
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [ToolCall(b.id, b.name, dict(b.input)) for b in message.content if b.type == "tool_use"]  # type: ignore[arg-type]
        usage = message.usage
        cache_read = usage.cache_read_input_tokens or 0
        prompt = usage.input_tokens + cache_read + (usage.cache_creation_input_tokens or 0)
        return Result(
            text, calls, _STOP[message.stop_reason or ""], (prompt, usage.output_tokens, cache_read), message.model
        )

    def _messages(self, ask: Ask) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for turn in ask.turns:
            if turn.role == "user":
                blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
                for media, data in turn.images:
                    source = {"type": "base64", "media_type": media, "data": base64.b64encode(data).decode()}
                    blocks.append({"type": "image", "source": source})
                blocks += [{"type": "image", "source": {"type": "url", "url": u}} for u in turn.image_urls]
                out.append({"role": "user", "content": blocks})
            elif turn.role == "assistant":
                blocks = [{"type": "text", "text": turn.text}] if turn.text else []
                blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in turn.tool_calls]
                out.append({"role": "assistant", "content": blocks})
            else:
                results = [{"type": "tool_result", "tool_use_id": i, "content": c} for i, c in turn.results]
                out.append({"role": "user", "content": results})
        return out


_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop_sequence",
    "max_tokens": "length",
    "tool_use": "tool",
    "refusal": "content_filter",
    "content_filtered": "content_filter",
}


# --- Bedrock ----------------------------------------------------------------------------


class BedrockSDK:
    """boto3 bedrock-runtime with the Orqen key as a Bedrock API key, over the edge's HTTPS port."""

    name = "bedrock"

    def __init__(self, tls_url: str, cert_path: str) -> None:
        # botocore reads the token from AWS_BEARER_TOKEN_BEDROCK at each call, as in an application.
        assert os.environ.get("AWS_BEARER_TOKEN_BEDROCK"), "set AWS_BEARER_TOKEN_BEDROCK to the Orqen key"
        self.client = boto3.client(
            "bedrock-runtime",
            endpoint_url=tls_url,
            region_name="us-east-1",
            verify=cert_path,
            config=Config(retries={"max_attempts": 1}),
        )
        # boto3 has no per-call headers: the call's own are added to its request just before signing.
        self._headers: dict[str, str] = {}
        self.client.meta.events.register("before-sign.bedrock-runtime.*", self._add_headers)

    def _add_headers(self, request: Any, **_: Any) -> None:
        for name, value in self._headers.items():
            request.headers[name] = value

    @staticmethod
    def model_id(model: str) -> str:
        """`bedrock/<id>` addresses a native Bedrock model; in the Bedrock SDK that is just <id>."""
        return model.removeprefix("bedrock/")

    def ask(self, ask: Ask) -> Result:
        self._headers = ask.headers
        kwargs: dict[str, Any] = {"modelId": self.model_id(ask.model), "messages": self._messages(ask)}
        if ask.system:
            kwargs["system"] = [{"text": ask.system}]
        config: dict[str, Any] = {"maxTokens": ask.max_tokens}
        if ask.temperature is not None:
            config["temperature"] = ask.temperature
        if ask.top_p is not None:
            config["topP"] = ask.top_p
        if ask.stop:
            config["stopSequences"] = ask.stop
        kwargs["inferenceConfig"] = config
        if ask.tools:
            tool_config: dict[str, Any] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t["name"],
                            "description": t["description"],
                            "inputSchema": {"json": t["schema"]},
                        }
                    }
                    for t in ask.tools
                ]
            }
            if ask.tool_choice:
                tool_config["toolChoice"] = (
                    {"tool": {"name": ask.tool_choice[5:]}}
                    if ask.tool_choice.startswith("tool:")
                    else {{"required": "any"}.get(ask.tool_choice, ask.tool_choice): {}}
                )
            kwargs["toolConfig"] = tool_config
        if not ask.stream:
            answer = self.client.converse(**kwargs)
            content = answer["output"]["message"]["content"]
            text = "".join(b.get("text", "") for b in content)
            calls = [
                ToolCall(b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"]["input"])
                for b in content
                if "toolUse" in b
            ]
            return Result(text, calls, _STOP[answer["stopReason"]], _bedrock_usage(answer["usage"]), kwargs["modelId"])
        text, finish, usage = "", "", (0, 0, 0)
        tools: dict[int, dict[str, str]] = {}
        for event in self.client.converse_stream(**kwargs)["stream"]:
            if "contentBlockStart" in event:
                start = event["contentBlockStart"]["start"].get("toolUse")
                if start:
                    index = event["contentBlockStart"]["contentBlockIndex"]
                    tools[index] = {"id": start["toolUseId"], "name": start["name"], "input": ""}
            elif "contentBlockDelta" in event:
                delta = event["contentBlockDelta"]["delta"]
                if "text" in delta:
                    text += delta["text"]
                elif "toolUse" in delta:
                    tools[event["contentBlockDelta"]["contentBlockIndex"]]["input"] += delta["toolUse"]["input"]
            elif "messageStop" in event:
                finish = _STOP[event["messageStop"]["stopReason"]]
            elif "metadata" in event:
                usage = _bedrock_usage(event["metadata"]["usage"])
        calls = [ToolCall(t["id"], t["name"], json.loads(t["input"] or "{}")) for _, t in sorted(tools.items())]
        return Result(text, calls, finish, usage, kwargs["modelId"])

    def _messages(self, ask: Ask) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for turn in ask.turns:
            if turn.role == "user":
                blocks: list[dict[str, Any]] = [{"text": turn.text}]
                blocks += [{"image": {"format": m.split("/")[1], "source": {"bytes": d}}} for m, d in turn.images]
                out.append({"role": "user", "content": blocks})
            elif turn.role == "assistant":
                blocks = [{"text": turn.text}] if turn.text else []
                blocks += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.input}} for c in turn.tool_calls]
                out.append({"role": "assistant", "content": blocks})
            else:
                results = [{"toolResult": {"toolUseId": i, "content": [{"text": c}]}} for i, c in turn.results]
                out.append({"role": "user", "content": results})
        return out


def _bedrock_usage(usage: dict[str, Any]) -> tuple[int, int, int]:
    cache_read = usage.get("cacheReadInputTokens", 0)
    prompt = usage["inputTokens"] + cache_read + usage.get("cacheWriteInputTokens", 0)
    return prompt, usage["outputTokens"], cache_read
