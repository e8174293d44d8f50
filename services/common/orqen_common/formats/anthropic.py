"""Anthropic's Messages API on the wire, typed, as Orqen speaks it in both directions.

The edge's Anthropic ingress decodes a caller's `MessagesRequest` and answers with a
`Message` or its stream of events; dispatch's Anthropic provider encodes a
`MessagesRequest` for the upstream and decodes its `Message` or events. Both sides use
these types, so a content block added here is one change the type checker follows
into both translators.

Requests (`_Request` types) omit what is unset: None means absent, and absent fields
are never sent. Answers (`_Answer` types) send every field, null included, as the API does.

Beyond Anthropic's own fields a request may carry Orqen's extensions, which dispatch
never sets: `x-orqen-examples` on a tool (example calls the optimizer routes by) and the
`aws_*` per-request Bedrock credentials (the edge moves them into the call's credentials).
Top-level fields the API has and Orqen does not translate are either refused by the
ingress (they would change the answer) or declared `Raw` and ignored (they only steer
Anthropic's own infrastructure); any other top-level field is a 400.

Anthropic adds content block and event types now and then. A caller's request may only
hold the types declared here (the ones Orqen cannot carry are declared so that they are
refused by name). An upstream answer is read leniently: blocks, deltas and events of
types not declared here are left out (`message_decoder`, `event_decoder`), as a client
written before they existed would do.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, get_args

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import CacheControl, JsonObject

NonEmptyStr = Annotated[str, Meta(min_length=1)]
Count = Annotated[int, Meta(ge=0)]

# --- the request -----------------------------------------------------------------------


class _Request(Struct, omit_defaults=True):
    """Request parts: an absent field and a null one mean the same, and neither is sent on."""


class Base64Source(_Request, tag="base64", tag_field="type"):
    media_type: NonEmptyStr
    # Base64, kept as text: decoding it into bytes here would copy every image; the ingress checks it.
    data: NonEmptyStr


class URLSource(_Request, tag="url", tag_field="type"):
    url: NonEmptyStr


class FileSource(_Request, tag="file", tag_field="type"):
    """A file uploaded to Anthropic's Files API: only Anthropic can read it."""

    file_id: str


ImageSource = Base64Source | URLSource | FileSource


class TextBlock(_Request, tag="text", tag_field="type"):
    """Text; its `citations` refer to documents Orqen cannot carry, so they are not read."""

    text: str
    cache_control: CacheControl | None = None


class ImageBlock(_Request, tag="image", tag_field="type"):
    source: ImageSource
    cache_control: CacheControl | None = None


class ToolUseBlock(_Request, tag="tool_use", tag_field="type"):
    """A tool call; an `input` left out of a caller's request is the empty object."""

    id: NonEmptyStr
    name: NonEmptyStr
    # A JSON object of the tool's own making.
    input: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(_Request, tag="thinking", tag_field="type"):
    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlock(_Request, tag="redacted_thinking", tag_field="type"):
    data: str = ""


class _Unsupported(_Request, tag_field="type"):
    """A block type the API has and the canonical shape cannot carry: declared to be refused by name."""


class DocumentBlock(_Unsupported, tag="document"):
    pass


class SearchResultBlock(_Unsupported, tag="search_result"):
    pass


class ServerToolUseBlock(_Unsupported, tag="server_tool_use"):
    pass


class WebSearchToolResultBlock(_Unsupported, tag="web_search_tool_result"):
    pass


class WebFetchToolResultBlock(_Unsupported, tag="web_fetch_tool_result"):
    pass


class CodeExecutionToolResultBlock(_Unsupported, tag="code_execution_tool_result"):
    pass


class BashCodeExecutionToolResultBlock(_Unsupported, tag="bash_code_execution_tool_result"):
    pass


class TextEditorCodeExecutionToolResultBlock(_Unsupported, tag="text_editor_code_execution_tool_result"):
    pass


class ToolSearchToolResultBlock(_Unsupported, tag="tool_search_tool_result"):
    pass


class ContainerUploadBlock(_Unsupported, tag="container_upload"):
    pass


class MCPToolUseBlock(_Unsupported, tag="mcp_tool_use"):
    pass


class MCPToolResultBlock(_Unsupported, tag="mcp_tool_result"):
    pass


UnsupportedBlock = (
    DocumentBlock
    | SearchResultBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | ToolSearchToolResultBlock
    | ContainerUploadBlock
    | MCPToolUseBlock
    | MCPToolResultBlock
)

# What a tool_result's content list may hold.
ToolResultContent = TextBlock | ImageBlock | DocumentBlock | SearchResultBlock


class ToolResultBlock(_Request, tag="tool_result", tag_field="type"):
    """A tool's result; no `content` is an empty result."""

    tool_use_id: NonEmptyStr
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


ContentBlock = (
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock | UnsupportedBlock
)


class UserMessage(_Request, tag="user", tag_field="role"):
    content: str | Annotated[list[ContentBlock], Meta(min_length=1)]


class AssistantMessage(_Request, tag="assistant", tag_field="role"):
    content: str | list[ContentBlock]


class SystemMessage(_Request, tag="system", tag_field="role"):
    """A system turn inside the conversation: the SDK lets callers send one; Orqen keeps it in place."""

    content: str | list[TextBlock]


MessageParam = UserMessage | AssistantMessage | SystemMessage


class Tool(_Request):
    """A tool: a custom one (no `type`, or "custom") with its input schema, or a server tool.

    `input_examples`, `defer_loading`, `allowed_callers` and `eager_input_streaming` are
    hints for Anthropic's own tool machinery and are not read.
    """

    name: NonEmptyStr
    type: str | None = None
    description: str | None = None
    # A JSON Schema, kept as JSON text (see orqen_common.formats.openai.JsonObject); required for
    # a custom tool, which the translators check.
    input_schema: JsonObject | UnsetType = UNSET
    strict: bool | None = None
    cache_control: CacheControl | None = None
    examples: list[Any] | None = field(default=None, name="x-orqen-examples")


class ToolChoiceAuto(_Request, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Request, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Request, tag="tool", tag_field="type"):
    name: NonEmptyStr
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Request, tag="none", tag_field="type"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class Metadata(_Request):
    user_id: str | None = None


class ThinkingConfig(_Request, forbid_unknown_fields=True):
    """Extended thinking ("enabled" with a budget, "adaptive", "disabled", ...), passed on as it is."""

    type: str
    budget_tokens: int | None = None
    display: str | None = None


class OutputConfig(_Request):
    effort: str | None = None
    # A required output format (JSON schema); the canonical shape cannot carry it.
    format: dict[str, Any] | None = None


class MessagesRequest(_Request, forbid_unknown_fields=True):
    """POST /v1/messages, with Orqen's extensions (see the module docstring)."""

    model: NonEmptyStr
    max_tokens: Count
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Count | None = None
    stop_sequences: list[str] | None = None
    metadata: Metadata | None = None
    thinking: ThinkingConfig | None = None
    stream: bool | None = None
    # Automatic caching: a breakpoint on the last cacheable block.
    cache_control: CacheControl | None = None
    output_config: OutputConfig | None = None
    # The MCP connector; the canonical shape cannot carry it.
    mcp_servers: list[Raw] | None = None
    # Accepted and not read: they steer Anthropic's own infrastructure (capacity, region,
    # speed, workspace, diagnostics, server-side containers and context editing) or, for
    # `container`, only matter to server tools, which are refused anyway.
    service_tier: Raw | UnsetType = UNSET
    container: Raw | UnsetType = UNSET
    context_management: Raw | UnsetType = UNSET
    diagnostics: Raw | UnsetType = UNSET
    inference_geo: Raw | UnsetType = UNSET
    speed: Raw | UnsetType = UNSET
    user_profile_id: Raw | UnsetType = UNSET
    workspace_id: Raw | UnsetType = UNSET
    # Orqen's extension: per-request Bedrock credentials.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_region_name: str | None = None
    aws_session_token: str | None = None
    aws_bearer_token_bedrock: str | None = None


# --- the answer ------------------------------------------------------------------------


class _Answer(Struct):
    """Answer parts: every field is sent, null included."""


class Usage(_Answer):
    """Token counts: input excludes cache reads and writes. A count left out (or null) is unknown."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        """The four counts of a split usage."""
        return cls(
            input_tokens=usage.input,
            output_tokens=usage.output,
            cache_read_input_tokens=usage.cache_read,
            cache_creation_input_tokens=usage.cache_write,
        )

    def tokens(self, known: TokenUsage | None = None) -> TokenUsage:
        """This usage in the split form; the counts it leaves unknown keep their `known` value."""
        known = known or TokenUsage()
        return TokenUsage(
            input=_count(self.input_tokens, known.input),
            output=_count(self.output_tokens, known.output),
            cache_read=_count(self.cache_read_input_tokens, known.cache_read),
            cache_write=_count(self.cache_creation_input_tokens, known.cache_write),
        )


def _count(value: int | None, known: int) -> int:
    return known if value is None else value


ResponseBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock


class Message(_Answer, tag="message", tag_field="type", kw_only=True):
    id: str
    role: str = "assistant"
    model: str
    content: list[ResponseBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


class TextDelta(_Answer, tag="text_delta", tag_field="type"):
    text: str


class InputJSONDelta(_Answer, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ThinkingDelta(_Answer, tag="thinking_delta", tag_field="type"):
    thinking: str


class SignatureDelta(_Answer, tag="signature_delta", tag_field="type"):
    signature: str


BlockDelta = TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta


class MessageStart(_Answer, tag="message_start", tag_field="type"):
    message: Message


class ContentBlockStart(_Answer, tag="content_block_start", tag_field="type"):
    index: int
    content_block: ResponseBlock


class ContentBlockDelta(_Answer, tag="content_block_delta", tag_field="type"):
    index: int
    delta: BlockDelta


class ContentBlockStop(_Answer, tag="content_block_stop", tag_field="type"):
    index: int


class StopDelta(_Answer):
    """What message_delta says about the end of the message."""

    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDelta(_Answer, tag="message_delta", tag_field="type"):
    """The end of a message; its usage counts are cumulative, and final."""

    delta: StopDelta
    usage: Usage = field(default_factory=Usage)


class MessageStop(_Answer, tag="message_stop", tag_field="type"):
    pass


class Ping(_Answer, tag="ping", tag_field="type"):
    pass


class ErrorDetail(_Answer):
    type: str = ""
    message: str = ""


class Error(_Answer, tag="error", tag_field="type"):
    """An error: the body of an error response, and the stream's error event."""

    error: ErrorDetail


StreamEvent = (
    MessageStart | ContentBlockStart | ContentBlockDelta | ContentBlockStop | MessageDelta | MessageStop | Ping | Error
)

# --- reading an upstream's answer leniently --------------------------------------------

_strict_message_decoder = msgspec.json.Decoder(Message)
_strict_event_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)
_json_decoder = msgspec.json.Decoder()


def _tags(union: object) -> frozenset[str]:
    """The `type` values of a union of tagged Structs."""
    return frozenset(str(member.__struct_config__.tag) for member in get_args(union))


_RESPONSE_BLOCKS: Final = _tags(ResponseBlock)
_BLOCK_DELTAS: Final = _tags(BlockDelta)
_EVENTS: Final = _tags(StreamEvent)


class MessageDecoder:
    """Reads an upstream's `Message`, its blocks of undeclared types left out."""

    def decode(self, buf: bytes | str, /) -> Message:
        """Raises msgspec's ValidationError or DecodeError for a body that is not a Message."""
        try:
            return _strict_message_decoder.decode(buf)
        except msgspec.ValidationError:
            # Rarely: a block of a type added after these types were written. Without such
            # blocks the body must fit, or it really is not a Message.
            loose = _json_decoder.decode(buf)
            if not isinstance(loose, dict) or not isinstance(loose.get("content"), list):
                raise
            loose["content"] = [b for b in loose["content"] if _type_of(b) in _RESPONSE_BLOCKS]
            return msgspec.convert(loose, Message)


class EventDecoder:
    """Reads an upstream's stream event; None for an event, block or delta of an undeclared type."""

    def decode(self, buf: bytes | str, /) -> StreamEvent | None:
        """Raises msgspec's ValidationError or DecodeError for an event of a declared type that does not fit."""
        try:
            return _strict_event_decoder.decode(buf)
        except msgspec.ValidationError:
            loose = _json_decoder.decode(buf)
            if not isinstance(loose, dict) or _type_of(loose) not in _EVENTS:
                return None
            kind = loose["type"]
            if kind == "content_block_start" and _type_of(loose.get("content_block")) not in _RESPONSE_BLOCKS:
                return None
            if kind == "content_block_delta" and _type_of(loose.get("delta")) not in _BLOCK_DELTAS:
                return None
            raise


message_decoder = MessageDecoder()
event_decoder = EventDecoder()


def _type_of(value: object) -> object:
    return value.get("type") if isinstance(value, dict) else None
