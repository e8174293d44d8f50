"""Amazon Bedrock's Converse and ConverseStream APIs: canonical chat <-> Converse.

The wire format is the REST-JSON boto3 sends: the model id is a percent-encoded path
label, everything else is the JSON body (blobs as base64 strings). A call is signed with
SigV4 by botocore's own signer, or carries a Bedrock API key as a bearer token.
ConverseStream answers in `application/vnd.amazon.eventstream` frames, decoded by
botocore's parser as the bytes arrive.

Converse needs what OpenAI does not: a system prompt apart from the messages, tool
results as user content, and roles strictly alternating from a user turn. Canonical
features Converse cannot express are refused with `unsupported`; mere hints (seed, store,
metadata, service_tier, parallel_tool_calls, stream_options, reasoning_effort, ...) are
dropped because the body is built from the fields Converse knows, never copied.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as AwsKeys
from botocore.eventstream import EventStreamBuffer, ParserError

from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url, text_of, unsupported
from orqen_common.errors import invalid_request
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    UpstreamUsage,
    read_json,
    refuse_openai_only_features,
    send,
)

WHERE = "Bedrock Converse"

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_CACHE_TTLS = ("5m", "1h")
# requestMetadata values must match this (the service model's pattern); others are dropped.
_METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")
# A region becomes part of a host name: nothing but letters, digits and hyphens may reach it.
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")

# Status of each modelled ConverseStream exception (`:exception-type`, any case).
_STATUS_BY_EXCEPTION = {
    "throttlingexception": 429,
    "validationexception": 400,
    "accessdeniedexception": 403,
    "resourcenotfoundexception": 404,
    "serviceunavailableexception": 503,
    "modeltimeoutexception": 504,
    "internalserverexception": 500,
    "modelstreamerrorexception": 502,
}

_NO_CREDENTIALS = (
    "No AWS credentials for Bedrock: configure AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
    "AWS_BEARER_TOKEN_BEDROCK) for Orqen dispatch, or send aws_access_key_id and aws_secret_access_key "
    "(or aws_bearer_token_bedrock) with the request."
)


class BedrockConverse:
    """POST {endpoint}/model/{modelId}/converse[-stream], SigV4-signed or with a Bedrock API key.

    Credentials and region sent with a request win over the operator's; the operator's
    values are those of the constructor.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None,
        bearer_token: str | None,
    ) -> None:
        if not _REGION.fullmatch(region):
            raise ValueError(f"{region!r} is not an AWS region name")
        self.name = name
        self._client = client
        self._endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._region = region
        self._operator_auth: str | AwsKeys | None = None
        if bearer_token:
            self._operator_auth = bearer_token
        elif access_key_id and secret_access_key:
            self._operator_auth = AwsKeys(access_key_id, secret_access_key, session_token or None)

    async def complete(self, chat: dict[str, Any], model: str, credentials: Credentials) -> Completion:
        body = converse_body(chat)
        response = await send(self._client, self._request(body, model, credentials, stream=False), self.name)
        answer = await read_json(response, self.name)
        completion = chat_completion(answer, model, _response_id(response), _stop_sequences(chat))
        return Completion(body=completion, usage=_upstream_usage(answer.get("usage")), status=response.status_code)

    async def stream(
        self, chat: dict[str, Any], model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield canonical chunks frame by frame, ending with the usage chunk of `metadata`."""
        body = converse_body(chat)
        response = await send(self._client, self._request(body, model, credentials, stream=True), self.name)
        state.status = response.status_code
        translator = StreamTranslator(_response_id(response), model, _stop_sequences(chat))
        try:
            async for message in _event_stream_messages(response, self.name):
                chunks = translator.chunks(message.headers, message.payload)
                if translator.usage is not None:
                    state.usage = translator.usage
                for chunk in chunks:
                    yield chunk
                if translator.usage is not None:
                    return  # `metadata` is the last event; its usage chunk ends the canonical stream.
        finally:
            await response.aclose()
        raise UpstreamError(502, f"{self.name} ended the stream before reporting usage")

    def _request(self, body: dict[str, Any], model: str, credentials: Credentials, stream: bool) -> httpx.Request:
        region = credentials.get("aws_region_name") or self._region
        if not _REGION.fullmatch(region):
            raise invalid_request(f"aws_region_name {region!r} is not an AWS region name.")
        auth = _caller_auth(credentials) or self._operator_auth
        if auth is None:
            raise UpstreamError(401, _NO_CREDENTIALS)
        # botocore encodes the modelId label with nothing safe: an ARN's ':' and '/' become %3A and %2F.
        url = (
            (self._endpoint_url or _regional_endpoint(region))
            + "/model/"
            + quote(model, safe="")
            + ("/converse-stream" if stream else "/converse")
        )
        content = orjson.dumps(body)
        if isinstance(auth, str):
            headers = {"content-type": "application/json", "authorization": f"Bearer {auth}"}
        else:
            headers = _sigv4_headers(url, content, auth, region)
        return self._client.build_request("POST", url, content=content, headers=headers)


# --- Credentials and signing ------------------------------------------------------------


def _caller_auth(credentials: Credentials) -> str | AwsKeys | None:
    """The request's own Bedrock API key or IAM keys, if it sent any."""

    def given(key: str) -> str | None:
        value = credentials.get(key) or None
        if value is not None and not _fits_a_header(value):
            raise invalid_request(f"{key} holds characters that cannot be sent to Bedrock.")
        return value

    bearer_token = given("aws_bearer_token_bedrock")
    if bearer_token:
        return bearer_token
    key_id, session = given("aws_access_key_id"), given("aws_session_token")
    secret = credentials.get("aws_secret_access_key") or None  # never sent, only signs: any characters
    if key_id and secret:
        return AwsKeys(key_id, secret, session)
    if key_id or secret or session:
        raise invalid_request(
            "aws_access_key_id and aws_secret_access_key must be sent together (aws_session_token only with them)."
        )
    return None


def _fits_a_header(value: str) -> bool:
    return all(" " <= char <= "~" for char in value)


def _regional_endpoint(region: str) -> str:
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{domain}"


def _sigv4_headers(url: str, content: bytes, keys: AwsKeys, region: str) -> dict[str, str]:
    """Headers of the request signed as boto3 signs it: SigV4 for service `bedrock`, body hashed."""
    request = AWSRequest(method="POST", url=url, data=content, headers={"Content-Type": "application/json"})
    SigV4Auth(keys, "bedrock", region).add_auth(request)
    return dict(request.headers.items())


# --- canonical request -> Converse body --------------------------------------------------


def converse_body(chat: dict[str, Any]) -> dict[str, Any]:
    """The Converse request body (everything but the modelId path label) for a canonical request."""
    refuse_openai_only_features(chat, WHERE)
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages must be a non-empty list.")
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise invalid_request("Each message must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), role))
        elif role == "user":
            turns.append(("user", _content_blocks(message.get("content"), role)))
        elif role == "assistant":
            turns.append(("assistant", _assistant_blocks(message)))
        elif role == "tool":
            turns.append(("user", _tool_result_blocks(message)))
        else:
            raise invalid_request(f"Unknown message role {role!r}.")
    converse_messages = _alternating(turns)
    body: dict[str, Any] = {"messages": converse_messages}
    if system:
        body["system"] = system
    has_tool_blocks = any(
        "toolUse" in block or "toolResult" in block for message in converse_messages for block in message["content"]
    )
    tool_config = _tool_config(chat, has_tool_blocks)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    inference_config = _inference_config(chat)
    if inference_config:
        body["inferenceConfig"] = inference_config
    # Model-specific fields Converse passes on as they are; these are Anthropic's names.
    additional = {name: chat[name] for name in ("top_k", "thinking", "anthropic_beta") if chat.get(name) is not None}
    if additional:
        body["additionalModelRequestFields"] = additional
    user = chat.get("user")
    if isinstance(user, str) and _METADATA_VALUE.fullmatch(user):
        body["requestMetadata"] = {"user": user}
    return body


def _content_blocks(content: Any, role: str) -> list[dict[str, Any]]:
    """Converse blocks of a message's content; a part's cache_control becomes a cachePoint after it."""
    if content is None:
        return []
    if isinstance(content, str):
        # Converse rejects blank text blocks; an empty string says nothing anyway.
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid_request(f"The content of a {role} message must be a string or a list of parts.")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            raise invalid_request(f"Each content part of a {role} message must be an object.")
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid_request(f"A {kind} part of a {role} message needs a string {kind}.")
            if text:
                blocks.append({"text": text})
        elif kind == "image_url" and role == "user":
            blocks.append(_image_block(part))
        else:
            raise unsupported(f"{kind!r} content parts in {role} messages", WHERE)
        if part.get("cache_control") and blocks and "cachePoint" not in blocks[-1]:
            blocks.append(_cache_point(part["cache_control"]))
    return blocks


def _cache_point(cache_control: Any) -> dict[str, Any]:
    point: dict[str, Any] = {"type": "default"}
    if isinstance(cache_control, dict) and cache_control.get("ttl") in _CACHE_TTLS:
        point["ttl"] = cache_control["ttl"]
    return {"cachePoint": point}


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid_request("An image_url part needs a url.")
    parsed = parse_data_url(url)
    if parsed is None:
        if url.startswith(("http://", "https://")):
            raise unsupported("Image URLs", f"{WHERE} (send the image as base64)")
        raise invalid_request("An image URL must be an http(s) URL or a base64 data URL.")
    media_type, data = parsed
    image_format = _IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise unsupported(f"Images of type {media_type}", WHERE)
    if not data:
        raise invalid_request("An image data URL holds no data.")
    # JSON carries blobs as base64, which the data URL already is.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _content_blocks(message.get("content"), "assistant")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise invalid_request("tool_calls must be a list.")
    blocks.extend({"toolUse": _tool_use(call)} for call in tool_calls)
    return blocks


def _tool_use(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise invalid_request("Each tool call needs a function with a name.")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_request(f"The call of tool {name!r} has no id.")
    arguments = function.get("arguments")
    try:
        # Some clients send "" for a call without arguments.
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else arguments or {}
    except orjson.JSONDecodeError:
        raise invalid_request(f"The arguments of the call of tool {name!r} are not valid JSON.") from None
    if not isinstance(tool_input, dict):
        raise invalid_request(f"The arguments of the call of tool {name!r} are not a JSON object.")
    return {"toolUseId": call_id, "name": name, "input": tool_input}


def _tool_result_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_request("A tool message needs the tool_call_id it answers.")
    content = message.get("content")
    text = text_of(content)
    result: dict[str, Any] = {"toolUseId": call_id, "content": [{"text": text}] if text else []}
    if message.get("is_error") is True:
        result["status"] = "error"
    blocks: list[dict[str, Any]] = [{"toolResult": result}]
    if isinstance(content, list):
        marked = [p["cache_control"] for p in content if isinstance(p, dict) and p.get("cache_control")]
        if marked:
            blocks.append(_cache_point(marked[-1]))
    return blocks


def _alternating(turns: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Converse messages: empty turns dropped, consecutive same-role turns merged, a user turn first."""
    messages: list[dict[str, Any]] = []
    for role, blocks in turns:
        if not blocks:
            continue  # Converse rejects empty content, and an empty turn says nothing.
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": list(blocks)})
    if not messages:
        raise invalid_request(f"{WHERE} needs at least one message with content.")
    if messages[0]["role"] != "user":
        raise invalid_request(f"{WHERE} needs the conversation to start with a user message.")
    return messages


def _tool_config(chat: dict[str, Any], has_tool_blocks: bool) -> dict[str, Any] | None:
    tools = chat.get("tools") or []
    choice = chat.get("tool_choice")
    if not isinstance(tools, list):
        raise invalid_request("tools must be a list.")
    if not tools:
        if has_tool_blocks:
            # Converse rejects toolUse/toolResult blocks unless a toolConfig is sent.
            raise unsupported("Tool calls or results in the history without tools", WHERE)
        if choice in (None, "auto", "none"):
            return None
        raise invalid_request("tool_choice needs tools.")
    if choice == "none":
        if has_tool_blocks:
            raise unsupported("tool_choice 'none' with tool history", WHERE)
        return None  # No tools offered is how Converse says "none".
    config: dict[str, Any] = {"tools": [entry for tool in tools for entry in _tool_entries(tool)]}
    if choice is not None:
        config["toolChoice"] = _tool_choice(choice)
    return config


def _tool_entries(tool: Any) -> list[dict[str, Any]]:
    kind = tool.get("type", "function") if isinstance(tool, dict) else None
    if kind != "function":
        raise unsupported(f"{kind!r} tools", WHERE)
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise invalid_request("Each tool needs a function with a name.")
    spec: dict[str, Any] = {
        "name": name,
        "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
    }
    if function.get("description"):
        spec["description"] = function["description"]
    if function.get("strict") is True:
        spec["strict"] = True
    entries = [{"toolSpec": spec}]
    if tool.get("cache_control"):
        entries.append(_cache_point(tool["cache_control"]))
    return entries


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise unsupported(f"tool_choice of type {choice.get('type')!r}", WHERE)
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return {"tool": {"name": name}}
    raise invalid_request(f"tool_choice {choice!r} is not valid.")


def _inference_config(chat: dict[str, Any]) -> dict[str, Any]:
    max_tokens = chat.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = chat.get("max_tokens")
    sampling = {"maxTokens": max_tokens, "temperature": chat.get("temperature"), "topP": chat.get("top_p")}
    config = {wire: value for wire, value in sampling.items() if value is not None}
    stops = _stop_sequences(chat)
    if stops:
        config["stopSequences"] = stops
    return config


def _stop_sequences(chat: dict[str, Any]) -> list[str]:
    stop = chat.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise invalid_request("stop must be a string or a list of strings.")


# --- Converse answer -> canonical ---------------------------------------------------------


def chat_completion(answer: dict[str, Any], model: str, response_id: str, stops: list[str]) -> dict[str, Any]:
    """The canonical chat.completion of a Converse answer."""
    message = _object(_object(answer.get("output")).get("message"))
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            tool_calls.append(_tool_call(block["toolUse"]))
        # reasoningContent and other blocks have no canonical place.
    canonical_message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        canonical_message["tool_calls"] = tool_calls
    stop_reason = answer.get("stopReason")
    choice = {"index": 0, "message": canonical_message, "finish_reason": finish_reason(stop_reason)}
    choice.update(_stop_sequence(stop_reason, stops))
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _token_usage(answer.get("usage")).canonical(),
    }


def _tool_call(tool_use: dict[str, Any]) -> dict[str, Any]:
    arguments = orjson.dumps(tool_use.get("input") if tool_use.get("input") is not None else {}).decode()
    return {
        "id": tool_use.get("toolUseId") or "",
        "type": "function",
        "function": {"name": tool_use.get("name") or "", "arguments": arguments},
    }


def _stop_sequence(stop_reason: Any, stops: list[str]) -> dict[str, str]:
    """Converse does not say which stop sequence matched: with only one asked for it is that
    one, otherwise "" (canonical for "a stop sequence, unknown which")."""
    if stop_reason != "stop_sequence":
        return {}
    return {"stop_sequence": stops[0] if len(stops) == 1 else ""}


def _token_usage(usage: Any) -> TokenUsage:
    usage = _object(usage)
    return TokenUsage(
        input=int(usage.get("inputTokens") or 0),
        output=int(usage.get("outputTokens") or 0),
        cache_read=int(usage.get("cacheReadInputTokens") or 0),
        cache_write=int(usage.get("cacheWriteInputTokens") or 0),
    )


def _upstream_usage(usage: Any) -> UpstreamUsage:
    tokens = _token_usage(usage)
    return UpstreamUsage(
        input_tokens=tokens.input + tokens.cache_read + tokens.cache_write,
        output_tokens=tokens.output,
        cached_input_tokens=tokens.cache_read,
        cache_write_input_tokens=tokens.cache_write,
    )


def _response_id(response: httpx.Response) -> str:
    return "bedrock-" + (response.headers.get("x-amzn-requestid") or uuid.uuid4().hex)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- ConverseStream events -> canonical chunks ---------------------------------------------


async def _event_stream_messages(response: httpx.Response, provider: str) -> AsyncIterator[Any]:
    """botocore EventStreamMessages as their bytes arrive; the buffer keeps a partial frame for later."""
    buffer = EventStreamBuffer()
    try:
        async for data in response.aiter_bytes():
            buffer.add_data(data)
            for message in buffer:
                yield message
    except httpx.TransportError as err:
        raise UpstreamError(502, f"{provider} stream broke: {err.__class__.__name__}") from err
    except ParserError as err:
        raise UpstreamError(502, f"{provider} sent a malformed event-stream frame: {err}") from err


class StreamTranslator:
    """ConverseStream events -> canonical chunks.

    Converse numbers content blocks (text and tool use alike); canonical numbers tool
    calls. The translator remembers which block is which tool call, so argument fragments
    land on the right call even if blocks interleave.
    """

    def __init__(self, response_id: str, model: str, stops: list[str]) -> None:
        self._id = response_id
        self._model = model
        self._stops = stops
        self._created = int(time.time())
        self._tool_index_by_block: dict[int, int] = {}
        self.usage: UpstreamUsage | None = None  # set by the final `metadata` event

    def chunks(self, headers: dict[str, Any], payload: bytes) -> list[dict[str, Any]]:
        """The canonical chunks of one event-stream message; an exception message raises."""
        message_type = headers.get(":message-type")
        if message_type == "exception":
            raise _stream_exception(str(headers.get(":exception-type") or ""), _message_of(payload))
        if message_type == "error":
            raise _stream_exception(str(headers.get(":error-code") or ""), str(headers.get(":error-message") or ""))
        if message_type != "event":
            return []
        event = _event_payload(payload)
        match headers.get(":event-type"):
            case "messageStart":
                return [self._chunk({"role": "assistant"})]
            case "contentBlockStart":
                return self._block_start(event)
            case "contentBlockDelta":
                return self._block_delta(event)
            case "messageStop":
                stop_reason = event.get("stopReason")
                return [self._chunk({}, finish_reason(stop_reason), _stop_sequence(stop_reason, self._stops))]
            case "metadata":
                tokens = event.get("usage")
                self.usage = _upstream_usage(tokens)
                return [self._usage_chunk(_token_usage(tokens).canonical())]
            case _:
                return []  # contentBlockStop, and events newer than this translator

    def _block_start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        tool_use = _object(event.get("start")).get("toolUse")
        if not isinstance(tool_use, dict):
            return []
        index = len(self._tool_index_by_block)
        self._tool_index_by_block[_block_index(event)] = index
        call = {
            "index": index,
            "id": tool_use.get("toolUseId") or "",
            "type": "function",
            "function": {"name": tool_use.get("name") or "", "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        delta = _object(event.get("delta"))
        text = delta.get("text")
        if isinstance(text, str):
            return [self._chunk({"content": text})] if text else []
        tool_use = delta.get("toolUse")
        if isinstance(tool_use, dict):
            fragment = tool_use.get("input")
            if not isinstance(fragment, str) or not fragment:
                return []
            index = self._tool_index_by_block.get(_block_index(event))
            if index is None:
                raise UpstreamError(502, "Bedrock streamed tool input for a content block it never started")
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})]
        return []  # reasoningContent and citations have no canonical place.

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, **(extra or {})}
        return {**self._envelope(), "choices": [choice]}

    def _usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._envelope(), "choices": [], "usage": usage}

    def _envelope(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}


def _block_index(event: dict[str, Any]) -> int:
    index = event.get("contentBlockIndex")
    if not isinstance(index, int):
        raise UpstreamError(502, "Bedrock sent a content block event without contentBlockIndex")
    return index


def _event_payload(payload: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError as err:
        raise UpstreamError(502, "Bedrock sent a stream event that is not JSON") from err
    if not isinstance(event, dict):
        raise UpstreamError(502, "Bedrock sent a stream event that is not an object")
    return event


def _message_of(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode(errors="replace")[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or body)
    return str(body)[:500]


def _stream_exception(exception_type: str, message: str) -> UpstreamError:
    status = _STATUS_BY_EXCEPTION.get(exception_type.lower(), 502)
    return UpstreamError(status, message or exception_type or "Bedrock stream error")
