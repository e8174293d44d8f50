"""Each provider's own model list, read in its wire format into `ListedModel`s.

- OpenAI and every OpenAI-compatible server: `GET {base}/models`, `{"object": "list", "data":
  [{"id", "object": "model", "created", "owned_by"}]}`. Some compatible servers add the context
  window (`context_length`, vLLM's `max_model_len`) and limits; those are read when present.
- Anthropic: `GET /v1/models`, paginated by `after_id` while `has_more`.
- Bedrock's control plane: `GET /foundation-models` (modalities, inference types, lifecycle) and
  `GET /inference-profiles` (paginated by `nextToken`): a model offered only through an
  inference profile is listed under the profile's id, which is what Converse takes.

OpenAI's list does not say what a model does, so its kind is read from the model's name.
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec
from msgspec import Struct

# What a model does. Only "chat" models answer chat requests (and orqen/* picks among them);
# the others serve the proxy families.
KINDS = ("chat", "responses", "completion", "embedding", "image", "audio", "moderation", "rerank", "video")

_KIND_BY_NAME = (
    (re.compile(r"embed", re.IGNORECASE), "embedding"),
    (re.compile(r"rerank", re.IGNORECASE), "rerank"),
    (re.compile(r"moderation|guard", re.IGNORECASE), "moderation"),
    (re.compile(r"^(dall-e|gpt-image|chatgpt-image)|image-|stable-diffusion|sdxl|titan-image", re.IGNORECASE), "image"),
    (re.compile(r"^(sora|veo)|video", re.IGNORECASE), "video"),
    (re.compile(r"^(whisper|tts-)|transcribe|-tts|realtime|audio", re.IGNORECASE), "audio"),
    (re.compile(r"^(babbage|davinci)-|^gpt-3\.5-turbo-instruct", re.IGNORECASE), "completion"),
    (re.compile(r"^(o\d+-pro|gpt-5(\.\d+)?-pro|codex-|computer-use)|-codex|deep-research", re.IGNORECASE), "responses"),
)


class ListedModel(Struct, frozen=True, omit_defaults=True):
    """A model as its provider lists it; None where the list does not say."""

    id: str  # as the provider takes it in a request
    kind: str = "chat"
    created: int = 0  # unix seconds, when the list gives it
    context_window: int | None = None
    max_output_tokens: int | None = None
    tools: bool | None = None
    vision: bool | None = None
    legacy: bool = False


def kind_by_name(model: str) -> str:
    """What a model does, judged from its name (for lists that do not say)."""
    for pattern, kind in _KIND_BY_NAME:
        if pattern.search(model):
            return kind
    return "chat"


# --- OpenAI and OpenAI-compatible ----------------------------------------------------------


class _OpenAIModel(Struct):
    id: str
    created: int | None = None
    # Extensions of some compatible servers (OpenRouter, vLLM, LM Studio, Together).
    context_length: int | None = None
    max_model_len: int | None = None
    max_context_length: int | None = None
    type: str | None = None


class _OpenAIList(Struct):
    data: list[_OpenAIModel]


openai_list_decoder = msgspec.json.Decoder(_OpenAIList)

# Together and LM Studio say what a model does under `type`.
_OPENAI_TYPES = {"chat": "chat", "llm": "chat", "language": "chat", "embedding": "embedding", "embeddings": "embedding",
                 "image": "image", "audio": "audio", "moderation": "moderation", "rerank": "rerank"}  # fmt: skip


def openai_models(answer: _OpenAIList) -> list[ListedModel]:
    """The models of an OpenAI(-compatible) list answer."""
    return [
        ListedModel(
            id=m.id,
            kind=_OPENAI_TYPES.get((m.type or "").lower()) or kind_by_name(m.id),
            created=m.created or 0,
            context_window=m.context_length or m.max_model_len or m.max_context_length,
        )
        for m in answer.data
        if m.id
    ]


# --- Anthropic -----------------------------------------------------------------------------


class _Supported(Struct):
    supported: bool


class _AnthropicCapabilities(Struct):
    image_input: _Supported | None = None


class _AnthropicModel(Struct):
    id: str
    created_at: str | None = None
    type: str = "model"
    # The current API gives capabilities, limits and the lifecycle; older answers do not.
    capabilities: _AnthropicCapabilities | None = None
    max_input_tokens: int | None = None
    max_tokens: int | None = None
    lifecycle: str = "active"  # "active" | "deprecated" | "retired"


class AnthropicPage(Struct):
    data: list[_AnthropicModel]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


anthropic_page_decoder = msgspec.json.Decoder(AnthropicPage)


def anthropic_models(page: AnthropicPage) -> list[ListedModel]:
    """The models of one page of Anthropic's list (all chat models); retired ones, which fail, are left out."""
    return [
        ListedModel(
            id=m.id,
            created=_unix(m.created_at),
            context_window=m.max_input_tokens,
            max_output_tokens=m.max_tokens,
            vision=m.capabilities.image_input.supported if m.capabilities and m.capabilities.image_input else None,
            legacy=m.lifecycle != "active",
        )
        for m in page.data
        if m.id and m.lifecycle != "retired"
    ]


# --- Bedrock -------------------------------------------------------------------------------


class _Lifecycle(Struct):
    status: str = "ACTIVE"


class _FoundationModel(Struct, rename="camel"):
    model_id: str
    model_arn: str = ""
    input_modalities: list[str] = []
    output_modalities: list[str] = []
    inference_types_supported: list[str] = []
    model_lifecycle: _Lifecycle | None = None


class _FoundationModels(Struct, rename="camel"):
    model_summaries: list[_FoundationModel] = []


class _ProfileModel(Struct, rename="camel"):
    model_arn: str = ""


class _InferenceProfile(Struct, rename="camel"):
    inference_profile_id: str
    models: list[_ProfileModel] = []
    status: str = "ACTIVE"
    created_at: str | None = None


class InferenceProfilePage(Struct, rename="camel"):
    inference_profile_summaries: list[_InferenceProfile] = []
    next_token: str | None = None


foundation_models_decoder = msgspec.json.Decoder(_FoundationModels)
inference_profiles_decoder = msgspec.json.Decoder(InferenceProfilePage)

_BEDROCK_KIND = {"EMBEDDING": "embedding", "IMAGE": "image", "VIDEO": "video", "SPEECH": "audio", "AUDIO": "audio"}


def bedrock_models(foundation: _FoundationModels, profiles: list[_InferenceProfile]) -> list[ListedModel]:
    """Models Converse can be called with: on-demand model ids, and inference profile ids.

    A foundation model without ON_DEMAND (only INFERENCE_PROFILE or PROVISIONED) cannot be
    called by its own id; it is listed through each active profile that routes to it.
    """
    listed: list[ListedModel] = []
    by_arn: dict[str, ListedModel] = {}
    for m in foundation.model_summaries:
        output = next((_BEDROCK_KIND[o] for o in m.output_modalities if o in _BEDROCK_KIND), None)
        kind = output or kind_by_name(m.model_id)
        lifecycle = m.model_lifecycle.status if m.model_lifecycle else "ACTIVE"
        model = ListedModel(
            id=m.model_id, kind=kind, vision="IMAGE" in m.input_modalities, legacy=lifecycle != "ACTIVE"
        )
        by_arn[m.model_arn] = model
        if "ON_DEMAND" in m.inference_types_supported:
            listed.append(model)
    for profile in profiles:
        if profile.status != "ACTIVE":
            continue
        routed = next((by_arn[p.model_arn] for p in profile.models if p.model_arn in by_arn), None)
        if routed is None:
            continue
        listed.append(
            msgspec.structs.replace(routed, id=profile.inference_profile_id, created=_unix(profile.created_at))
        )
    return listed


def _unix(timestamp: str | None) -> int:
    """Unix seconds of an RFC 3339 time; 0 when absent or unreadable."""
    if not timestamp:
        return 0
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
