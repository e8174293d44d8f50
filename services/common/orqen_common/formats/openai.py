"""OpenAI Chat Completions on the wire, typed: the canonical chat shape of Orqen.

Inside Orqen a chat request is an OpenAI Chat Completions request (`ChatRequest`), its
answer a `ChatCompletion`, and a stream a sequence of `ChatCompletionChunk`s. The edge
translates each SDK's format into these and back; dispatch translates them to each
provider and back. N ingress + M provider translators, never one per pair.

Decoding validates: a body that does not fit these types is refused with a 400 naming
the field (`decode_request`), before anything is sent anywhere.

Beyond OpenAI's own fields the canonical request may carry these extensions. A provider
translator that can honour one does; one that cannot either ignores it (when it is only a
hint) or rejects the request with `unsupported(...)` (when dropping it would change the
answer):

- `top_k`: sampling; Anthropic and Bedrock honour it, OpenAI rejects it.
- `thinking` (Anthropic's shape): extended thinking; OpenAI rejects it.
- `anthropic_beta`: the caller's `anthropic-beta` header; sent on to Anthropic, a hint elsewhere.
- `cache_control` on a content part, a tool or a system part (Anthropic's shape):
  prompt-caching breakpoints; a hint where the provider caches on its own.
- `is_error` on a tool message: the tool failed (Anthropic's `is_error`, Bedrock's
  `status: error`); OpenAI has no such flag, and the result's text still says so.
- `x-orqen-examples` on a function: example calls the optimizer routes by; the edge
  removes it before dispatch.
- `aws_*`: per-request Bedrock credentials; the edge moves them out of the body into the
  call's credentials, so they never reach a provider as a field.

An answer's choice (or a stream's finish chunk) may carry `stop_sequence`: present when the
provider says a stop sequence ended generation, holding that sequence, or "" when the
provider does not say which; the OpenAI ingress drops it. A prompt's usage may carry
`prompt_tokens_details.cache_creation_tokens` (cache writes, a part of `prompt_tokens`).

A canonical stream always ends with a usage chunk (`choices: []`, `usage` set), whether or
not the caller asked for `stream_options.include_usage`: every ingress needs the final
usage, and only the OpenAI ingress decides whether its caller sees that chunk.

Top-level request fields that OpenAI has and these types do not name (new API parameters)
are kept verbatim in `ChatRequest.passthrough` and sent on to OpenAI-compatible providers,
as OpenAI's own SDK would send them.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from orqen_common.errors import invalid_request

T = TypeVar("T")

# --- the request -----------------------------------------------------------------------


class _Request(Struct, omit_defaults=True):
    """Request parts: an absent field and a null one mean the same, and neither is sent on."""


class CacheControl(_Request):
    """A prompt-caching breakpoint (Anthropic's shape)."""

    type: str
    ttl: str | None = None


class ImageURL(_Request):
    url: str
    detail: str | None = None


class TextPart(_Request, tag="text", tag_field="type"):
    text: str
    cache_control: CacheControl | None = None


class ImagePart(_Request, tag="image_url", tag_field="type"):
    image_url: ImageURL
    cache_control: CacheControl | None = None


class InputAudioPart(_Request, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any]


class FilePart(_Request, tag="file", tag_field="type"):
    file: dict[str, Any]


class RefusalPart(_Request, tag="refusal", tag_field="type"):
    refusal: str


ContentPart = TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart
Content = str | list[ContentPart]


class FunctionCall(_Request):
    """A function the model called: its name and its arguments as a JSON text."""

    name: str
    arguments: str


class ToolCall(_Request, tag="function", tag_field="type"):
    id: str
    function: FunctionCall


class SystemMessage(_Request, tag="system", tag_field="role"):
    content: Content
    name: str | None = None


class DeveloperMessage(_Request, tag="developer", tag_field="role"):
    content: Content
    name: str | None = None


class UserMessage(_Request, tag="user", tag_field="role"):
    content: Content
    name: str | None = None


class AssistantMessage(_Request, tag="assistant", tag_field="role"):
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(_Request, tag="tool", tag_field="role"):
    content: Content
    tool_call_id: str
    is_error: bool | None = None


class FunctionMessage(_Request, tag="function", tag_field="role"):
    """The legacy `functions` API's result message (refused by every provider but OpenAI)."""

    content: str | None
    name: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage


# A JSON object kept as the caller's JSON text. The edge and dispatch pass tool schemas on without
# reading them, and building each one as dicts was a quarter of the edge's CPU on a request with
# 500 tools; msgspec writes a Raw back verbatim, and code that must read one decodes it there.
# msgspec cannot check a Raw's JSON type, nor take `Raw | None`: `checked_object` does the
# first (null is absent, UNSET), where each request is decoded.
JsonObject = Annotated[Raw, Meta(extra_json_schema={"anyOf": [{"type": "object"}, {"type": "null"}]})]

# What a tool without parameters takes: some providers refuse a schema that is absent or `{}`.
EMPTY_PARAMETERS = Raw(b'{"type":"object","properties":{}}')


class FunctionDefinition(_Request):
    name: str
    description: str | None = None
    # A JSON Schema; the optimizer reads it (to route and compress), the edge and dispatch do not.
    parameters: JsonObject | UnsetType = UNSET
    strict: bool | None = None
    examples: list[Any] | None = field(default=None, name="x-orqen-examples")


class Tool(_Request, tag="function", tag_field="type"):
    function: FunctionDefinition
    cache_control: CacheControl | None = None


class CustomTool(_Request, tag="custom", tag_field="type"):
    """OpenAI's free-form custom tool: OpenAI-compatible providers take it, others refuse it."""

    custom: dict[str, Any]


AnyTool = Tool | CustomTool


def tool_name(tool: AnyTool) -> str:
    """The name a tool is called by."""
    return tool.function.name if isinstance(tool, Tool) else str(tool.custom.get("name", ""))


class ToolChoiceFunction(_Request):
    name: str


class NamedToolChoice(_Request, tag="function", tag_field="type"):
    function: ToolChoiceFunction


class NamedCustomToolChoice(_Request, tag="custom", tag_field="type"):
    custom: ToolChoiceFunction


class AllowedToolsChoice(_Request, tag="allowed_tools", tag_field="type"):
    """OpenAI's choice among a subset of the tools; only OpenAI-compatible providers take it."""

    allowed_tools: dict[str, Any]


# "auto", "none", "required", one named tool, or OpenAI's allowed subset.
ToolChoice = str | NamedToolChoice | NamedCustomToolChoice | AllowedToolsChoice


class StreamOptions(_Request):
    include_usage: bool | None = None


class ChatRequest(_Request):
    """POST /v1/chat/completions, with Orqen's extensions (see the module docstring)."""

    model: str
    messages: list[Message]
    tools: list[AnyTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    web_search_options: dict[str, Any] | None = None
    # The legacy function-calling API: OpenAI still takes it, other providers refuse it.
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    # Orqen's extensions.
    top_k: int | None = None
    thinking: dict[str, Any] | None = None
    anthropic_beta: list[str] | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_region_name: str | None = None
    aws_session_token: str | None = None
    aws_bearer_token_bedrock: str | None = None
    # OpenAI fields this type does not name, as the caller sent them (see `decode_request`).
    passthrough: dict[str, Raw] | None = field(default=None, name="x-orqen-passthrough")


CREDENTIAL_FIELDS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_region_name",
    "aws_session_token",
    "aws_bearer_token_bedrock",
)

# Wire names of the fields ChatRequest names; any other top-level field is passed through.
_REQUEST_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(ChatRequest))
_request_decoder = msgspec.json.Decoder(ChatRequest)
_top_level_decoder = msgspec.json.Decoder(dict[str, Raw])
_encoder = msgspec.json.Encoder()


class _NamedFieldsOnly(ChatRequest, forbid_unknown_fields=True):
    """A request with no top-level field that ChatRequest does not name: most bodies, decoded in one pass.

    Finding the fields to pass through takes a second pass over the whole body (about 0.2 ms for
    500 tools' 370 KB), which a body without any can skip.
    """


_named_fields_decoder = msgspec.json.Decoder(_NamedFieldsOnly)


def decode_request(body: bytes) -> ChatRequest:
    """The canonical request in a JSON body; a 400 naming the field that does not fit."""
    try:
        # The same fields in the same order: a ChatRequest, field for field.
        request = ChatRequest(*msgspec.structs.astuple(_named_fields_decoder.decode(body)))
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        # Fields to pass through, or a body that does not fit: the second pass, or the 400 saying why.
        request = _with_passthrough(body)
    for index, tool in enumerate(request.tools or ()):
        if isinstance(tool, Tool) and not _is_object(schema := tool.function.parameters):
            tool.function.parameters = checked_object(schema, f"$.tools[{index}].function.parameters")
    return request


def _with_passthrough(body: bytes) -> ChatRequest:
    request = decode(_request_decoder, body, "The request body")
    unknown = {k: v for k, v in _top_level_decoder.decode(body).items() if k not in _REQUEST_FIELDS}
    if unknown:
        request.passthrough = {**(request.passthrough or {}), **unknown}
    return request


def encode_request(request: ChatRequest) -> bytes:
    """The request as OpenAI's JSON: the passthrough fields back at the top level."""
    passthrough = request.passthrough
    if not passthrough:
        return _encoder.encode(request)
    body = _encoder.encode(msgspec.structs.replace(request, passthrough=None))
    # Both are objects and `model` is never empty: splice the passthrough fields in.
    return body[:-1] + b"," + _encoder.encode(passthrough)[1:]


def decode(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """`decoder`'s type from JSON `body`; a 400 that says what does not fit, and where."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as err:
        raise invalid_request(f"{what} is not valid: {err}.") from None
    except msgspec.DecodeError as err:
        raise invalid_request(f"Malformed JSON body: {err}.") from None
    except UnicodeDecodeError as err:
        # msgspec checks UTF-8 only when it builds a string, and reports it as this ValueError.
        raise invalid_request(f"Malformed JSON body: invalid UTF-8 at byte {err.start} of a string.") from None


_OPEN_BRACE = ord("{")
_NULL = Raw(b"null")
_JSON_TYPES = {str: "str", int: "int", float: "float", bool: "bool", list: "array"}


def _is_object(value: Raw | UnsetType) -> bool:
    """Whether `value` is absent or a JSON object (a decoded Raw starts at its value's first byte)."""
    return value is UNSET or memoryview(value)[0] == _OPEN_BRACE


def checked_object(value: Raw | UnsetType, path: str) -> Raw | UnsetType:
    """`value` when it is absent or holds a JSON object, UNSET when it is null; else a 400 worded as the
    decoder words a field typed `object | null`, at `path` (from `$`)."""
    if isinstance(value, UnsetType) or _is_object(value):
        return value
    if value == _NULL:
        return UNSET
    got = _JSON_TYPES[type(msgspec.json.decode(value))]
    raise invalid_request(f"The request body is not valid: Expected `object | null`, got `{got}` - at `{path}`.")


def schema_or_empty(value: Raw | UnsetType) -> Raw:
    """A tool's parameters schema, or EMPTY_PARAMETERS for none or `{}` (for providers that require one)."""
    if value is UNSET or not msgspec.json.decode(value, type=dict[str, Raw]):
        return EMPTY_PARAMETERS
    return value


# --- the answer ------------------------------------------------------------------------


class _Answer(Struct):
    """Answer parts: fields are always sent (null included) unless they are UNSET."""


class PromptTokensDetails(_Answer):
    cached_tokens: int = 0
    # Orqen's extension: cache writes (Anthropic, Bedrock), a part of prompt_tokens.
    cache_creation_tokens: int | UnsetType = UNSET
    audio_tokens: int | UnsetType = UNSET


class CompletionUsage(_Answer):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | UnsetType | None = UNSET
    completion_tokens_details: dict[str, Any] | UnsetType | None = UNSET


class AnswerMessage(_Answer):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET
    annotations: list[Any] | UnsetType = UNSET
    audio: dict[str, Any] | UnsetType | None = UNSET
    function_call: FunctionCall | UnsetType | None = UNSET
    # The reasoning text OpenAI-compatible servers add (DeepSeek, vLLM: `reasoning_content`; Groq: `reasoning`).
    reasoning_content: str | UnsetType | None = UNSET
    reasoning: str | UnsetType | None = UNSET


class Choice(_Answer, kw_only=True):
    index: int = 0
    message: AnswerMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    # Orqen's extension (see the module docstring); the OpenAI ingress drops it.
    stop_sequence: str | UnsetType | None = UNSET


class ChatCompletion(_Answer, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET


class FunctionCallDelta(_Answer):
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ToolCallDelta(_Answer):
    index: int = 0  # a provider that streams one call at a time may leave it out
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: FunctionCallDelta | UnsetType = UNSET


class Delta(_Answer):
    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET
    refusal: str | UnsetType | None = UNSET
    reasoning_content: str | UnsetType | None = UNSET
    reasoning: str | UnsetType | None = UNSET


class ChunkChoice(_Answer, kw_only=True):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | UnsetType | None = UNSET
    stop_sequence: str | UnsetType | None = UNSET


class ChatCompletionChunk(_Answer, kw_only=True):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET


completion_decoder = msgspec.json.Decoder(ChatCompletion)
chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)


def encode(value: object) -> bytes:
    """Any canonical answer or wire-format struct as JSON."""
    return _encoder.encode(value)
