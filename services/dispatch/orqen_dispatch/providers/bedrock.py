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

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import msgspec
from botocore.credentials import Credentials as AwsKeys
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from msgspec import UNSET, Struct, UnsetType

from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url, stop_sequences, text_of, unsupported
from orqen_common.errors import invalid_request
from orqen_common.formats import bedrock
from orqen_common.formats.openai import (
    AnswerMessage,
    AnyTool,
    AssistantMessage,
    CacheControl,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Content,
    ContentPart,
    Delta,
    DeveloperMessage,
    FunctionCall,
    FunctionCallDelta,
    FunctionMessage,
    ImagePart,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolMessage,
    UserMessage,
    encode,
    schema_or_empty,
)
from orqen_dispatch.credentials.validation import fits_a_header
from orqen_dispatch.providers import model_lists
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    decode_answer,
    read_body,
    refuse_openai_only_features,
    send,
)
from orqen_dispatch.providers.sigv4 import sigv4_headers
from orqen_dispatch.upstream_http import UPSTREAM_ERRORS, UpstreamClient, UpstreamRequest, UpstreamResponse

WHERE = "Bedrock Converse"

_IMAGE_FORMATS: dict[str, bedrock.ImageFormat] = {
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

# A bound on the pages of ListInferenceProfiles followed.
_MAX_PROFILE_PAGES = 20

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
        client: UpstreamClient,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None,
        bearer_token: str | None,
        *,
        control_endpoint_url: str | None = None,
    ) -> None:
        """`control_endpoint_url`: the control plane (`bedrock`, model lists); default is the region's."""
        if not _REGION.fullmatch(region):
            raise ValueError(f"{region!r} is not an AWS region name")
        self.name = name
        self._client = client
        self._endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._control_endpoint_url = control_endpoint_url.rstrip("/") if control_endpoint_url else None
        self._region = region
        self._operator_auth: str | AwsKeys | None = None
        if bearer_token:
            self._operator_auth = bearer_token
        elif access_key_id and secret_access_key:
            self._operator_auth = AwsKeys(access_key_id, secret_access_key, session_token or None)

    async def complete(self, chat: ChatRequest, model: str, credentials: Credentials) -> Completion:
        body = converse_request(chat)
        response = await send(self._client, self._request(body, model, credentials, stream=False), self.name)
        answer = decode_answer(bedrock.response_decoder, await read_body(response, self.name), self.name)
        completion = chat_completion(answer, model, _response_id(response), stop_sequences(chat.stop))
        return Completion(body=completion, usage=answer.usage.tokens(), status=response.status)

    async def stream(
        self, chat: ChatRequest, model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Yield canonical chunks frame by frame, ending with the usage chunk of `metadata`."""
        body = converse_request(chat)
        response = await send(self._client, self._request(body, model, credentials, stream=True), self.name)
        state.status = response.status
        translator = StreamTranslator(_response_id(response), model, stop_sequences(chat.stop))
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
            response.close()
        raise UpstreamError(502, f"{self.name} ended the stream before reporting usage")

    async def list_models(self, credentials: Credentials) -> list[model_lists.ListedModel]:
        """ListFoundationModels and ListInferenceProfiles on the control plane, signed as the runtime calls."""
        region, auth = self._region_and_auth(credentials)
        base = self._control_endpoint_url or _regional_endpoint(region, "bedrock")
        foundation = decode_answer(
            model_lists.foundation_models_decoder,
            await self._get(f"{base}/foundation-models", auth, region),
            self.name,
            "model list",
        )
        profiles = []
        next_token: str | None = None
        for _ in range(_MAX_PROFILE_PAGES):
            query = "?maxResults=1000" + (f"&nextToken={quote(next_token, safe='')}" if next_token else "")
            page = decode_answer(
                model_lists.inference_profiles_decoder,
                await self._get(f"{base}/inference-profiles{query}", auth, region),
                self.name,
                "inference profile list",
            )
            profiles += page.inference_profile_summaries
            next_token = page.next_token
            if not next_token:
                break
        return model_lists.bedrock_models(foundation, profiles)

    async def _get(self, url: str, auth: str | AwsKeys, region: str) -> bytes:
        headers = _auth_headers("GET", url, b"", auth, region)
        request = UpstreamRequest("GET", url, headers)
        return await read_body(await send(self._client, request, self.name), self.name)

    def _region_and_auth(self, credentials: Credentials) -> tuple[str, str | AwsKeys]:
        """The call's region and its Bedrock API key or IAM keys: the call's own first, then the operator's."""
        region = credentials.get("aws_region_name") or self._region
        if not _REGION.fullmatch(region):
            raise invalid_request(f"aws_region_name {region!r} is not an AWS region name.")
        auth = _caller_auth(credentials) or self._operator_auth
        if auth is None:
            raise UpstreamError(401, _NO_CREDENTIALS)
        return region, auth

    def _request(
        self, body: bedrock.ConverseRequest, model: str, credentials: Credentials, stream: bool
    ) -> UpstreamRequest:
        region, auth = self._region_and_auth(credentials)
        # botocore encodes the modelId label with nothing safe: an ARN's ':' and '/' become %3A and %2F.
        url = (
            (self._endpoint_url or _regional_endpoint(region, "bedrock-runtime"))
            + "/model/"
            + quote(model, safe="")
            + ("/converse-stream" if stream else "/converse")
        )
        content = encode(body)
        # The bytes and headers signed are the ones sent: the URL goes byte for byte (upstream_http).
        return UpstreamRequest("POST", url, _auth_headers("POST", url, content, auth, region), content)


# --- Credentials and signing ------------------------------------------------------------


def _caller_auth(credentials: Credentials) -> str | AwsKeys | None:
    """The request's own Bedrock API key or IAM keys, if it sent any."""

    def given(key: str) -> str | None:
        value = credentials.get(key) or None
        if value is not None and not fits_a_header(value):
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


def _regional_endpoint(region: str, service: str) -> str:
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region}.{domain}"


def _auth_headers(method: str, url: str, content: bytes, auth: str | AwsKeys, region: str) -> dict[str, str]:
    """A Bedrock API key as a bearer token, or the request signed as boto3 signs it (SigV4, service `bedrock`)."""
    if isinstance(auth, str):
        headers = {"authorization": f"Bearer {auth}"}
        return {"content-type": "application/json", **headers} if content else headers
    return sigv4_headers(method, url, content, auth, region, "bedrock", "application/json" if content else "")


# --- canonical request -> Converse request ------------------------------------------------


def converse_request(chat: ChatRequest) -> bedrock.ConverseRequest:
    """The Converse request (everything but the modelId path label) for a canonical request."""
    refuse_openai_only_features(chat, WHERE)
    system: list[bedrock.SystemContentBlock] = []
    turns: list[tuple[bedrock.ConversationRole, list[bedrock.ContentBlock]]] = []
    for message in chat.messages:
        match message:
            case SystemMessage() | DeveloperMessage():
                role = "system" if isinstance(message, SystemMessage) else "developer"
                # Only text and cache points pass for a system role: they are system blocks too.
                blocks = _content_blocks(message.content, role)
                system.extend(bedrock.SystemContentBlock(text=b.text, cache_point=b.cache_point) for b in blocks)
            case UserMessage():
                turns.append(("user", _content_blocks(message.content, "user")))
            case AssistantMessage():
                turns.append(("assistant", _assistant_blocks(message)))
            case ToolMessage():
                turns.append(("user", _tool_result_blocks(message)))
            case FunctionMessage():
                raise unsupported("A message of role 'function' (legacy functions; use tools)", WHERE)
    messages = _alternating(turns)
    has_tool_blocks = any(
        block.tool_use is not None or block.tool_result is not None for message in messages for block in message.content
    )
    # Model-specific fields Converse passes on as they are; these are Anthropic's names.
    model_fields = bedrock.ModelFields(top_k=chat.top_k, thinking=chat.thinking, anthropic_beta=chat.anthropic_beta)
    additional: dict[str, Any] = msgspec.to_builtins(model_fields)
    user = chat.user
    return bedrock.ConverseRequest(
        messages=messages,
        system=system or None,
        tool_config=_tool_config(chat, has_tool_blocks),
        inference_config=_inference_config(chat),
        additional_model_request_fields=additional or None,
        request_metadata={"user": user} if user is not None and _METADATA_VALUE.fullmatch(user) else None,
    )


def _content_blocks(content: Content | None, role: str) -> list[bedrock.ContentBlock]:
    """Converse blocks of a message's content; a part's cache_control becomes a cachePoint after it."""
    if content is None:
        return []
    if isinstance(content, str):
        # Converse rejects blank text blocks; an empty string says nothing anyway.
        return [bedrock.ContentBlock(text=content)] if content else []
    blocks: list[bedrock.ContentBlock] = []
    for part in content:
        if isinstance(part, TextPart | RefusalPart) and (isinstance(part, TextPart) or role == "assistant"):
            text = part.text if isinstance(part, TextPart) else part.refusal
            if text:
                blocks.append(bedrock.ContentBlock(text=text))
        elif isinstance(part, ImagePart) and role == "user":
            blocks.append(bedrock.ContentBlock(image=_image_block(part)))
        else:
            raise unsupported(f"{_part_type(part)!r} content parts in {role} messages", WHERE)
        cache_control = part.cache_control if isinstance(part, TextPart | ImagePart) else None
        if cache_control and blocks and blocks[-1].cache_point is None:
            blocks.append(bedrock.ContentBlock(cache_point=_cache_point(cache_control)))
    return blocks


def _part_type(part: ContentPart) -> str:
    """The `type` a content part has on the wire, e.g. "input_audio"."""
    return str(type(part).__struct_config__.tag)


def _cache_point(cache_control: CacheControl) -> bedrock.CachePointBlock:
    ttl = cache_control.ttl if cache_control.ttl in _CACHE_TTLS else None
    return bedrock.CachePointBlock(type="default", ttl=ttl)


def _image_block(part: ImagePart) -> bedrock.ImageBlock:
    url = part.image_url.url
    if not url:
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
    return bedrock.ImageBlock(format=image_format, source=bedrock.ImageSource(data=base64.b64decode(data)))


def _assistant_blocks(message: AssistantMessage) -> list[bedrock.ContentBlock]:
    blocks = _content_blocks(message.content, "assistant")
    blocks.extend(bedrock.ContentBlock(tool_use=_tool_use(call)) for call in message.tool_calls or ())
    return blocks


def _tool_use(call: ToolCall) -> bedrock.ToolUseBlock:
    name = call.function.name
    if not name:
        raise invalid_request("Each tool call needs a function with a name.")
    if not call.id:
        raise invalid_request(f"The call of tool {name!r} has no id.")
    arguments = call.function.arguments
    try:
        # Some clients send "" for a call without arguments.
        tool_input = msgspec.json.decode(arguments) if arguments.strip() else {}
    except msgspec.DecodeError:
        raise invalid_request(f"The arguments of the call of tool {name!r} are not valid JSON.") from None
    if not isinstance(tool_input, dict):
        raise invalid_request(f"The arguments of the call of tool {name!r} are not a JSON object.")
    return bedrock.ToolUseBlock(tool_use_id=call.id, name=name, input=tool_input)


def _tool_result_blocks(message: ToolMessage) -> list[bedrock.ContentBlock]:
    if not message.tool_call_id:
        raise invalid_request("A tool message needs the tool_call_id it answers.")
    text = text_of(message.content)
    result = bedrock.ToolResultBlock(
        tool_use_id=message.tool_call_id,
        content=[bedrock.ToolResultContentBlock(text=text)] if text else [],
        status="error" if message.is_error is True else None,
    )
    blocks = [bedrock.ContentBlock(tool_result=result)]
    if isinstance(message.content, list):
        marked = [p.cache_control for p in message.content if isinstance(p, TextPart | ImagePart) and p.cache_control]
        if marked:
            blocks.append(bedrock.ContentBlock(cache_point=_cache_point(marked[-1])))
    return blocks


def _alternating(turns: list[tuple[bedrock.ConversationRole, list[bedrock.ContentBlock]]]) -> list[bedrock.Message]:
    """Converse messages: empty turns dropped, consecutive same-role turns merged, a user turn first."""
    messages: list[bedrock.Message] = []
    for role, blocks in turns:
        if not blocks:
            continue  # Converse rejects empty content, and an empty turn says nothing.
        if messages and messages[-1].role == role:
            messages[-1].content.extend(blocks)
        else:
            messages.append(bedrock.Message(role=role, content=list(blocks)))
    if not messages:
        raise invalid_request(f"{WHERE} needs at least one message with content.")
    if messages[0].role != "user":
        raise invalid_request(f"{WHERE} needs the conversation to start with a user message.")
    return messages


def _tool_config(chat: ChatRequest, has_tool_blocks: bool) -> bedrock.ToolConfiguration | None:
    tools = chat.tools or []
    choice = chat.tool_choice
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
    return bedrock.ToolConfiguration(
        tools=[entry for tool in tools for entry in _tool_entries(tool)],
        tool_choice=_tool_choice(choice) if choice is not None else None,
    )


def _tool_entries(tool: AnyTool) -> list[bedrock.Tool]:
    if not isinstance(tool, Tool):
        raise unsupported("Custom (free-form) tools", WHERE)
    function = tool.function
    if not function.name:
        raise invalid_request("Each tool needs a function with a name.")
    spec = bedrock.ToolSpecification(
        name=function.name,
        input_schema=bedrock.ToolInputSchema(json=schema_or_empty(function.parameters)),
        description=function.description or None,
        strict=True if function.strict is True else None,
    )
    entries = [bedrock.Tool(tool_spec=spec)]
    if tool.cache_control:
        entries.append(bedrock.Tool(cache_point=_cache_point(tool.cache_control)))
    return entries


def _tool_choice(choice: ToolChoice) -> bedrock.ToolChoice:
    if choice == "auto":
        return bedrock.ToolChoice(auto=bedrock.AutoToolChoice())
    if choice == "required":
        return bedrock.ToolChoice(any=bedrock.AnyToolChoice())
    if isinstance(choice, NamedToolChoice) and choice.function.name:
        return bedrock.ToolChoice(tool=bedrock.SpecificToolChoice(name=choice.function.name))
    if isinstance(choice, Struct):  # OpenAI's allowed_tools or a named custom tool
        raise unsupported(f"tool_choice {choice.__struct_config__.tag!r}", WHERE)
    raise invalid_request(f"tool_choice {encode(choice).decode()} is not valid.")


def _inference_config(chat: ChatRequest) -> bedrock.InferenceConfiguration | None:
    max_tokens = chat.max_completion_tokens if chat.max_completion_tokens is not None else chat.max_tokens
    config = bedrock.InferenceConfiguration(
        max_tokens=max_tokens,
        temperature=chat.temperature,
        top_p=chat.top_p,
        stop_sequences=stop_sequences(chat.stop) or None,
    )
    return None if config == bedrock.InferenceConfiguration() else config


# --- Converse answer -> canonical ---------------------------------------------------------


def chat_completion(answer: bedrock.ConverseResponse, model: str, response_id: str, stops: list[str]) -> ChatCompletion:
    """The canonical chat.completion of a Converse answer."""
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for block in answer.output.message.content:
        if isinstance(block.text, str):
            texts.append(block.text)
        elif isinstance(block.tool_use, bedrock.OutputToolUse):
            tool_calls.append(_tool_call(block.tool_use))
        # reasoningContent and other blocks have no canonical place.
    message = AnswerMessage(content="".join(texts) if texts else None, tool_calls=tool_calls or UNSET)
    choice = Choice(
        message=message,
        finish_reason=finish_reason(answer.stop_reason),
        stop_sequence=_stop_sequence(answer.stop_reason, stops),
    )
    return ChatCompletion(
        id=response_id,
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=answer.usage.tokens().canonical(),
    )


def _tool_call(tool_use: bedrock.OutputToolUse) -> ToolCall:
    arguments = msgspec.json.encode(tool_use.input).decode()
    return ToolCall(id=tool_use.tool_use_id, function=FunctionCall(name=tool_use.name, arguments=arguments))


def _stop_sequence(stop_reason: str, stops: list[str]) -> str | UnsetType:
    """Converse does not say which stop sequence matched: with only one asked for it is that
    one, otherwise "" (canonical for "a stop sequence, unknown which")."""
    if stop_reason != "stop_sequence":
        return UNSET
    return stops[0] if len(stops) == 1 else ""


def _response_id(response: UpstreamResponse) -> str:
    return "bedrock-" + (response.headers.get("x-amzn-requestid") or uuid.uuid4().hex)


# --- ConverseStream events -> canonical chunks ---------------------------------------------


async def _event_stream_messages(response: UpstreamResponse, provider: str) -> AsyncIterator[EventStreamMessage]:
    """botocore EventStreamMessages as their bytes arrive; the buffer keeps a partial frame for later."""
    buffer = EventStreamBuffer()
    try:
        async for data in response.chunks():
            buffer.add_data(data)
            for message in buffer:
                yield message
    except UPSTREAM_ERRORS as err:
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
        self.usage: TokenUsage | None = None  # set by the final `metadata` event

    def chunks(self, headers: Mapping[str, object], payload: bytes) -> list[ChatCompletionChunk]:
        """The canonical chunks of one event-stream message; an exception message raises."""
        message_type = headers.get(":message-type")
        if message_type == "exception":
            raise _stream_exception(str(headers.get(":exception-type") or ""), _message_of(payload))
        if message_type == "error":
            raise _stream_exception(str(headers.get(":error-code") or ""), str(headers.get(":error-message") or ""))
        if message_type != "event":
            return []
        match _stream_event(str(headers.get(":event-type") or ""), payload):
            case bedrock.MessageStartEvent():
                return [self._chunk(Delta(role="assistant"))]
            case bedrock.ContentBlockStartEvent() as event:
                return self._block_start(event)
            case bedrock.ContentBlockDeltaEvent() as event:
                return self._block_delta(event)
            case bedrock.MessageStopEvent(stop_reason=stop_reason):
                return [self._chunk(Delta(), finish_reason(stop_reason), _stop_sequence(stop_reason, self._stops))]
            case bedrock.MetadataEvent(usage=usage):
                self.usage = usage.tokens()
                return [self._usage_chunk(self.usage.canonical())]
            case _:
                return []  # contentBlockStop, and events newer than this translator

    def _block_start(self, event: bedrock.ContentBlockStartEvent) -> list[ChatCompletionChunk]:
        tool_use = event.start.tool_use
        if isinstance(tool_use, UnsetType):
            return []
        index = len(self._tool_index_by_block)
        self._tool_index_by_block[event.content_block_index] = index
        function = FunctionCallDelta(name=tool_use.name, arguments="")
        call = ToolCallDelta(index=index, id=tool_use.tool_use_id, type="function", function=function)
        return [self._chunk(Delta(tool_calls=[call]))]

    def _block_delta(self, event: bedrock.ContentBlockDeltaEvent) -> list[ChatCompletionChunk]:
        delta = event.delta
        if isinstance(delta.text, str):
            return [self._chunk(Delta(content=delta.text))] if delta.text else []
        if isinstance(delta.tool_use, bedrock.ToolUseBlockDelta):
            fragment = delta.tool_use.input
            if not fragment:
                return []
            index = self._tool_index_by_block.get(event.content_block_index)
            if index is None:
                raise UpstreamError(502, "Bedrock streamed tool input for a content block it never started")
            call = ToolCallDelta(index=index, function=FunctionCallDelta(arguments=fragment))
            return [self._chunk(Delta(tool_calls=[call]))]
        return []  # reasoningContent and citations have no canonical place.

    def _chunk(
        self, delta: Delta, finish: str | None = None, stop_sequence: str | UnsetType = UNSET
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(delta=delta, finish_reason=finish, stop_sequence=stop_sequence)
        return ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[choice])

    def _usage_chunk(self, usage: CompletionUsage) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[], usage=usage)


def _stream_event(event_type: str, payload: bytes) -> bedrock.StreamEvent | None:
    try:
        return bedrock.stream_event(event_type, payload)
    except msgspec.ValidationError as err:
        raise UpstreamError(502, f"Bedrock sent a {event_type} event that does not fit its API: {err}") from None
    except msgspec.DecodeError:
        raise UpstreamError(502, "Bedrock sent a stream event that is not JSON") from None


_exception_decoder = msgspec.json.Decoder(bedrock.StreamException)


def _message_of(payload: bytes) -> str:
    try:
        exception = _exception_decoder.decode(payload)
    except msgspec.DecodeError:
        exception = bedrock.StreamException()
    return exception.message or exception.message_capitalised or payload.decode(errors="replace")[:500]


def _stream_exception(exception_type: str, message: str) -> UpstreamError:
    status = _STATUS_BY_EXCEPTION.get(exception_type.lower(), 502)
    return UpstreamError(status, message or exception_type or "Bedrock stream error")
