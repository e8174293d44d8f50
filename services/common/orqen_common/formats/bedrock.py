"""Amazon Bedrock's Converse and ConverseStream on the wire, typed, as Orqen speaks them.

The edge reads a `ConverseRequest` from boto3 callers and answers with a `ConverseResponse`
or ConverseStream events; dispatch sends a `ConverseRequest` to Bedrock and reads its
answer. Names follow Bedrock's API reference, snake_case here and camelCase on the wire.

Requests are read strictly: an unknown field is a 400 naming it, as Bedrock itself answers.
Members Orqen cannot translate (documents, guardrails, ...) are declared as `Untranslated`
so a translator can refuse them by name instead of calling them unknown. Answers and stream
events are read leniently: Bedrock adds members over time, and Orqen reads only those it
translates.

Bedrock's unions (a content block, an image source, a tool choice, ...) are objects with
exactly one member, not tagged by a `type` field: `_Union` checks "exactly one" on decode,
so the 400 names the object's path (`$.messages[0].content[1]`).

A ConverseStream event travels as one `application/vnd.amazon.eventstream` frame (see
`bedrock_eventstream`): the frame's `:event-type` header names the event, the payload is
the event's JSON.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from orqen_common.canonical import TokenUsage
from orqen_common.errors import invalid_request
from orqen_common.formats.bedrock_eventstream import event_frame
from orqen_common.formats.openai import JsonObject, checked_object, decode

# --- the request -------------------------------------------------------------------------


class _Request(Struct, omit_defaults=True, forbid_unknown_fields=True, rename="camel"):
    """Request parts: None is absent (never sent), an unknown field is refused."""


_NULL = Raw(b"null")


class _Union(_Request):
    """One of Bedrock's unions: an object holding exactly one of its members."""

    def __post_init__(self) -> None:
        if sum(value is not None and value is not UNSET for value in msgspec.structs.astuple(self)) != 1:
            names = ", ".join(f"`{name}`" for name in _member_names(type(self)))
            raise ValueError(f"Expected an object with exactly one of {names}")

    @property
    def kind(self) -> str:
        """The wire name of the member this union holds, e.g. `toolUse`."""
        for name, value in zip(_member_names(type(self)), msgspec.structs.astuple(self), strict=True):
            if value is not None and value is not UNSET:
                return name
        raise AssertionError("a union always holds one member")  # __post_init__ checked it


@cache
def _member_names(union: type[_Union]) -> tuple[str, ...]:
    return tuple(f.encode_name for f in msgspec.structs.fields(union))


class Untranslated(Struct):
    """An object Orqen reads no further: decoded so that a translator can refuse it by name, or drop a hint."""


ImageFormat = Literal["png", "jpeg", "gif", "webp"]


class ImageSource(_Union):
    # JSON carries a blob as base64; decoding checks it and yields the bytes.
    data: bytes | None = field(default=None, name="bytes")
    s3_location: Untranslated | None = None


class ImageBlock(_Request):
    format: ImageFormat
    source: ImageSource


class ToolUseBlock(_Request):
    tool_use_id: str
    name: str
    # The call's input, free-form JSON (an object, as the tool's input schema says).
    input: dict[str, Any]
    # Set for server-side tools, which Orqen does not run.
    type: str | None = None


class ToolResultContentBlock(_Union):
    # The tool's result as free-form JSON.
    json: Any = None
    text: str | None = None
    image: Untranslated | None = None
    document: Untranslated | None = None
    video: Untranslated | None = None
    search_result: Untranslated | None = None


ToolResultStatus = Literal["success", "error"]


class ToolResultBlock(_Request):
    tool_use_id: str
    content: list[ToolResultContentBlock]
    status: ToolResultStatus | None = None
    type: str | None = None


class CachePointBlock(_Request):
    """A prompt-caching checkpoint after the blocks before it."""

    type: str
    ttl: str | None = None


class ContentBlock(_Union):
    """A block of a message's content; Orqen translates text, images, tool use and results, cache points."""

    text: str | None = None
    image: ImageBlock | None = None
    tool_use: ToolUseBlock | None = None
    tool_result: ToolResultBlock | None = None
    cache_point: CachePointBlock | None = None
    # The model's reasoning in an assistant turn of the history.
    reasoning_content: Untranslated | None = None
    document: Untranslated | None = None
    video: Untranslated | None = None
    audio: Untranslated | None = None
    guard_content: Untranslated | None = None
    citations_content: Untranslated | None = None
    search_result: Untranslated | None = None
    tool_addition: Untranslated | None = None
    tool_removal: Untranslated | None = None


ConversationRole = Literal["user", "assistant"]


class Message(_Request):
    role: ConversationRole
    content: Annotated[list[ContentBlock], Meta(min_length=1)]


class SystemContentBlock(_Union):
    text: str | None = None
    cache_point: CachePointBlock | None = None
    guard_content: Untranslated | None = None


class InferenceConfiguration(_Request):
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None


class ToolInputSchema(_Union):
    # A JSON Schema, free-form, kept as JSON text (see orqen_common.formats.openai.JsonObject).
    json: JsonObject | UnsetType = UNSET

    def __post_init__(self) -> None:
        # Null is no member, as it was when this was a dict or None: the union's own check says so.
        if self.json == _NULL:
            self.json = UNSET
        super().__post_init__()


class ToolSpecification(_Request):
    name: str
    input_schema: ToolInputSchema
    description: str | None = None
    strict: bool | None = None


class Tool(_Union):
    tool_spec: ToolSpecification | None = None
    cache_point: CachePointBlock | None = None
    system_tool: Untranslated | None = None


class AutoToolChoice(_Request):
    """The model decides whether to call a tool."""


class AnyToolChoice(_Request):
    """The model calls at least one tool."""


class SpecificToolChoice(_Request):
    name: str


class ToolChoice(_Union):
    auto: AutoToolChoice | None = None
    any: AnyToolChoice | None = None
    tool: SpecificToolChoice | None = None


class ToolConfiguration(_Request):
    tools: Annotated[list[Tool], Meta(min_length=1)]
    tool_choice: ToolChoice | None = None


class ConverseRequest(_Request):
    """The body of POST /model/{modelId}/converse and /converse-stream (the model id is in the path)."""

    messages: Annotated[list[Message], Meta(min_length=1)]
    system: list[SystemContentBlock] | None = None
    inference_config: InferenceConfiguration | None = None
    tool_config: ToolConfiguration | None = None
    # Fields Bedrock passes to the model as they are: free-form JSON (`ModelFields` for Anthropic's).
    additional_model_request_fields: dict[str, Any] | None = None
    request_metadata: dict[str, str] | None = None
    # Features Orqen does not translate: declared so that a translator can name them.
    guardrail_config: Untranslated | None = None
    prompt_variables: Untranslated | None = None
    output_config: Untranslated | None = None
    # Hints about latency tier, logging and response extras.
    performance_config: Untranslated | None = None
    additional_model_response_field_paths: list[str] | None = None
    service_tier: Untranslated | None = None


class ModelFields(Struct, omit_defaults=True, forbid_unknown_fields=True):
    """The additionalModelRequestFields Orqen maps: Anthropic's, by Anthropic's names."""

    top_k: Annotated[int, Meta(ge=1)] | None = None
    # Anthropic's extended-thinking settings, passed on as they are.
    thinking: dict[str, Any] | None = None
    anthropic_beta: list[str] | None = None


MODEL_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(ModelFields))

_request_decoder = msgspec.json.Decoder(ConverseRequest)


def decode_request(body: bytes) -> ConverseRequest:
    """The Converse request in a JSON body; a 400 naming the field that does not fit."""
    request = decode(_request_decoder, body, "The request body")
    for index, tool in enumerate(request.tool_config.tools if request.tool_config else ()):
        if tool.tool_spec is not None:
            path = f"$.toolConfig.tools[{index}].toolSpec.inputSchema.json"
            checked_object(tool.tool_spec.input_schema.json, path)
    return request


def decode_model_fields(fields: dict[str, Any]) -> ModelFields:
    """additionalModelRequestFields read as Anthropic's; a 400 naming the field that does not fit.

    Callers refuse the fields outside `MODEL_FIELDS` first, by name.
    """
    try:
        # Converted where they sit in the body, so that an error names its path from the body.
        return msgspec.convert({"additionalModelRequestFields": fields}, _ModelFieldsInBody).fields
    except msgspec.ValidationError as err:
        raise invalid_request(f"The request body is not valid: {err}.") from None


class _ModelFieldsInBody(Struct):
    fields: ModelFields = field(name="additionalModelRequestFields")


# --- the answer ----------------------------------------------------------------------------


class _Answer(Struct, rename="camel"):
    """Answer parts: read leniently (unknown members are skipped); UNSET fields are not sent."""


class Usage(_Answer):
    """Token counts, split: `input_tokens` excludes the cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    @classmethod
    def of(cls, tokens: TokenUsage) -> Usage:
        """Bedrock's report of `tokens`."""
        return cls(
            input_tokens=tokens.input,
            output_tokens=tokens.output,
            total_tokens=tokens.input + tokens.cache_read + tokens.cache_write + tokens.output,
            cache_read_input_tokens=tokens.cache_read,
            cache_write_input_tokens=tokens.cache_write,
        )

    def tokens(self) -> TokenUsage:
        """The counts as Orqen records them."""
        return TokenUsage(
            input=self.input_tokens,
            output=self.output_tokens,
            cache_read=self.cache_read_input_tokens,
            cache_write=self.cache_write_input_tokens,
        )


class Metrics(_Answer):
    latency_ms: int = 0


class OutputToolUse(_Answer):
    tool_use_id: str
    name: str
    input: dict[str, Any] = {}


class OutputBlock(_Answer):
    """A content block of an answer; blocks Orqen does not translate (reasoning, citations) hold neither."""

    text: str | UnsetType = UNSET
    tool_use: OutputToolUse | UnsetType = UNSET


class OutputMessage(_Answer):
    role: str = "assistant"
    content: list[OutputBlock] = []


class ConverseOutput(_Answer):
    message: OutputMessage


class ConverseResponse(_Answer):
    """The body of Converse's answer."""

    output: ConverseOutput
    stop_reason: str
    usage: Usage
    metrics: Metrics = field(default_factory=Metrics)


response_decoder = msgspec.json.Decoder(ConverseResponse)


# --- the stream ----------------------------------------------------------------------------


class StreamEvent(_Answer):
    """A ConverseStream event; `event_type` is its name, the frame's `:event-type`."""

    event_type: ClassVar[str]


class MessageStartEvent(StreamEvent):
    event_type = "messageStart"
    role: str = "assistant"


class ToolUseBlockStart(_Answer):
    tool_use_id: str
    name: str


class ContentBlockStart(_Answer):
    tool_use: ToolUseBlockStart | UnsetType = UNSET


class ContentBlockStartEvent(StreamEvent, kw_only=True):
    """A block opens; Bedrock sends it for a tool use block, a text block opens with its first delta."""

    event_type = "contentBlockStart"
    content_block_index: int
    start: ContentBlockStart


class ToolUseBlockDelta(_Answer):
    # A fragment of the input object's JSON text.
    input: str


class ContentBlockDelta(_Answer):
    """More of a block; deltas Orqen does not translate (reasoning, citations) hold neither member."""

    text: str | UnsetType = UNSET
    tool_use: ToolUseBlockDelta | UnsetType = UNSET


class ContentBlockDeltaEvent(StreamEvent, kw_only=True):
    event_type = "contentBlockDelta"
    content_block_index: int
    delta: ContentBlockDelta


class ContentBlockStopEvent(StreamEvent):
    event_type = "contentBlockStop"
    content_block_index: int


class MessageStopEvent(StreamEvent):
    event_type = "messageStop"
    stop_reason: str


class MetadataEvent(StreamEvent, kw_only=True):
    """The last event: the usage of the whole answer."""

    event_type = "metadata"
    usage: Usage
    metrics: Metrics | UnsetType = UNSET


# The exceptions ConverseStream's event union models; botocore drops the code and message of others.
STREAM_EXCEPTIONS = frozenset(
    {
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
    }
)


class StreamException(_Answer):
    """The payload of an exception frame (`:exception-type` names it)."""

    message: str = ""
    # The capitalised spelling some AWS services use.
    message_capitalised: str = field(default="", name="Message")


_EVENT_TYPES: tuple[type[StreamEvent], ...] = (
    MessageStartEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    MessageStopEvent,
    MetadataEvent,
)
_event_decoders = {cls.event_type: msgspec.json.Decoder(cls) for cls in _EVENT_TYPES}
_encoder = msgspec.json.Encoder()


def stream_event(event_type: str, payload: bytes) -> StreamEvent | None:
    """The event of a frame's type and payload; None for an event type newer than these.

    Raises msgspec.DecodeError (a ValidationError included) for a payload that does not fit.
    """
    decoder = _event_decoders.get(event_type)
    return None if decoder is None else decoder.decode(payload or b"{}")


def frame(event: StreamEvent) -> bytes:
    """The event as one event-stream frame."""
    return event_frame(event.event_type, _encoder.encode(event))
